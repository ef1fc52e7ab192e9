"""A fresh machine's `workflow-service serve`, a process of its own with no JWT_SECRET, attacked as issue 13
says (holes 7, 8, 11): the README's quick start works with the key the service made in DATA_DIR, a token
signed with the old public default is refused, no token sent as `?token=` reaches a log line, and
/metrics answers only with METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.jwt_secret import KEY_FILE_NAME
from tests.docs.blocks import examples, parse_blocks
from tests.docs.runner import DocService, ExampleRunner
from tests.gateway.support import create_workflow, execute, make_token, new_user, read_socket, wait_for_job
from tests.support.service_process import REPO, ServiceProcess, service_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

METRICS_TOKEN = "metrics-scraper-token-" + uuid.uuid4().hex
OLD_PUBLIC_DEFAULT = "change-me-in-production"
README_URL = "http://localhost:8001"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fresh-service") / "data"


@pytest.fixture(scope="module")
def fresh(data_dir: Path) -> Iterator[ServiceProcess]:
    """No JWT_SECRET, the embedded store and Redis, a local Ray of its own, INFO logs in JSON to stdout and
    LOG_FILE: how `workflow-service serve` starts on a laptop, plus METRICS_TOKEN."""
    env = {
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "LOG_FILE": str(data_dir / "service.log"),
        "METRICS_TOKEN": METRICS_TOKEN,
        "RAY_DASHBOARD": "false",
        "RAY_NAMESPACE": f"fresh-{uuid.uuid4().hex[:8]}",
        "MAX_ACTIVE_JOBS": "2",
        "WARM_POOL_SIZE": "1",
        "EXECUTOR_POOL_SIZE": "1",
    }
    with service_process(env, cwd=data_dir.parent) as service:
        yield service


def service_key(data_dir: Path) -> str:
    return (data_dir / KEY_FILE_NAME).read_text().strip()


async def test_the_readme_quick_start_curl_works_with_the_key_the_service_made(fresh, data_dir):
    readme = [example for example in examples(parse_blocks(REPO / "README.md")) if example.role == "curl"]
    assert any("workflow-service token" in example.block.text for example in readme), "README's quick start"
    service = DocService(
        base_url=fresh.base_url, token="", jwt_secret="", replacements={README_URL: fresh.base_url}
    )
    async with httpx.AsyncClient(base_url=fresh.base_url, timeout=30) as http:
        runner = ExampleRunner(service, http)
        runner.variables.update(DATA_DIR=str(data_dir), HOST="127.0.0.1")
        for example in readme:
            await runner.run(example)
    assert stat.S_IMODE((data_dir / KEY_FILE_NAME).stat().st_mode) == 0o600


async def test_a_token_signed_with_the_old_public_default_is_refused(fresh, data_dir):
    """The attack (hole 7): an admin token anyone could sign with the documented default secret."""
    forged = make_token("mallory", roles=["admin"], key=OLD_PUBLIC_DEFAULT)
    async with httpx.AsyncClient(base_url=fresh.base_url) as http:
        refused = await http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401, refused.text
        genuine = make_token("alice", key=service_key(data_dir))
        accepted = await http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {genuine}"})
        assert accepted.status_code == 200, accepted.text


def _written_lines(fresh: ServiceProcess, data_dir: Path) -> list[str]:
    return fresh.output + (data_dir / "service.log").read_text(encoding="utf-8").splitlines()


async def test_tokens_sent_as_query_parameters_reach_no_log_line(fresh, data_dir):
    """The attack (hole 8): read a token back from the access log of a stream opened with `?token=`."""
    key = service_key(data_dir)
    user = new_user("streamer", key=key)
    token = user.token
    rejected = make_token("nobody", key=OLD_PUBLIC_DEFAULT)
    async with httpx.AsyncClient(base_url=fresh.base_url, timeout=30) as http:
        workflow = await create_workflow(http, user)
        job = await execute(http, user, workflow["id"], {"name": "x"})
        await wait_for_job(http, user, job["id"])
        events = f"/api/v1/jobs/{job['id']}/events"
        async with http.stream("GET", events, params={"token": token}) as response:
            assert response.status_code == 200
            assert [line async for line in response.aiter_lines()]
        assert (await http.get(events, params={"token": rejected})).status_code == 401
    socket = await read_socket(f"{fresh.ws_url}/ws/jobs/{job['id']}?token={token}")
    assert socket.messages, socket
    await asyncio.sleep(0.5)  # the access log line of the last request is written after its response
    lines = _written_lines(fresh, data_dir)
    for secret in (token, rejected, key):
        leaked = [line for line in lines if secret in line]
        assert not leaked, leaked
    assert any(events in line and "token=***" in line for line in lines), "the requests were logged"
    assert any("WebSocket" in line and "token=***" in line for line in lines), "the socket was logged"
    assert all(json.loads(line) for line in (data_dir / "service.log").read_text().splitlines())


async def test_metrics_answer_only_with_the_metrics_token(fresh, data_dir):
    user_token = make_token("alice", key=service_key(data_dir))
    async with httpx.AsyncClient(base_url=fresh.base_url) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
        a_users = await http.get("/metrics", headers={"Authorization": f"Bearer {user_token}"})
        scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        health = await http.get("/health")
    for refused in (missing, wrong, a_users):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        assert "METRICS_TOKEN" in refused.json()["detail"]
    assert scraped.status_code == 200 and "# TYPE workflow_jobs_started_total counter" in scraped.text
    assert health.status_code == 200, "only /metrics is behind METRICS_TOKEN"
