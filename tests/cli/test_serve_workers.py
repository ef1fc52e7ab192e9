"""`workflow-service serve --workers 2`: two gateway processes on one port, one Ray and one embedded Redis
under them, and whatever a client does works whichever process it lands on.

One service serves the module. Each request names the process that answered (X-Gateway-Worker), so
every step below proves where it ran: a job is created on one worker, then retried with its
Idempotency-Key, watched over SSE and over a WebSocket on the other, and /metrics on either counts the
jobs and requests of both. Last, SIGTERM ends open streams properly and stops every process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import pytest_asyncio

from cli import main
from gateway.served_by import WORKER_HEADER
from tests.gateway.support import (
    JWT_SECRET,
    create_workflow,
    new_user,
    read_socket,
    read_sse,
    wait_for_job,
)
from tests.support.service_process import (
    REPO,
    SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT,
    ServiceProcess,
    service_process,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WORKERS = 2
CONNECTION_ATTEMPTS = 40
"""Connections opened, at most, until both workers have answered one: the kernel hands each new
connection to whichever worker accepts first."""
USER = new_user("multi-worker")
WAITING_FOREVER = {
    "name": "waits for a signal nobody sends",
    "nodes": [{"id": "wait", "type": "wait", "config": {"signal": "never"}}],
    "edges": [],
}
METRICS_POLLS, METRICS_POLL_S = 60, 0.25
"""Each gateway's job watcher reads its jobs' ends from the store about once a second."""
ANNOUNCED_PIDS = re.compile(r"Workers: +2 gateway processes \(pids (\d+), (\d+)\)")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The embedded defaults (a local Ray, the embedded Redis and SQLite, started once by the serving
    process), with a single warm runner."""
    data_dir = tmp_path_factory.mktemp("serve-workers") / "data"
    env = {
        "JWT_SECRET": JWT_SECRET,
        "DATA_DIR": str(data_dir),
        "RAY_DASHBOARD": "false",
        "RAY_NAMESPACE": f"serve-workers-{uuid.uuid4().hex[:8]}",
        "MAX_ACTIVE_JOBS": "2",
        "JOB_ACTOR_MODE": "reuse",
        "WARM_POOL_SIZE": "1",
        "EXECUTOR_POOL_SIZE": "1",
        "LOG_LEVEL": "WARNING",
    }
    with service_process(env, cwd=data_dir.parent, timeout_s=180, workers=WORKERS) as running:
        yield running


def served_by(response: httpx.Response) -> int:
    return int(response.headers[WORKER_HEADER])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def clients(service: ServiceProcess) -> AsyncIterator[dict[int, httpx.AsyncClient]]:
    """One client per worker, by pid: each keeps its one connection, so all its requests go to that
    worker (every test still checks the header)."""
    pinned: dict[int, httpx.AsyncClient] = {}
    for _ in range(CONNECTION_ATTEMPTS):
        client = httpx.AsyncClient(
            base_url=service.base_url, headers=USER.headers, limits=httpx.Limits(max_connections=1)
        )
        pid = served_by(await client.get("/ping"))
        if pid in pinned or len(pinned) == WORKERS:
            await client.aclose()
        else:
            pinned[pid] = client
        if len(pinned) == WORKERS:
            break
    assert len(pinned) == WORKERS, f"{CONNECTION_ATTEMPTS} connections all went to {list(pinned)}"
    yield pinned
    for client in pinned.values():
        await client.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def first_job(clients: dict[int, httpx.AsyncClient]) -> dict[str, Any]:
    """A job executed on the first worker with an Idempotency-Key, run to its end."""
    first_pid, first = next(iter(clients.items()))
    workflow = await create_workflow(first, USER)
    response = await first.post(
        f"/api/v1/workflows/{workflow['id']}/execute",
        json={"name": "Ada"},
        headers={"Idempotency-Key": "retried-elsewhere"},
    )
    assert (response.status_code, served_by(response)) == (202, first_pid), response.text
    job = await wait_for_job(first, USER, response.json()["id"])
    assert job["status"] == "completed", job
    return job


def other_worker(clients: dict[int, httpx.AsyncClient]) -> tuple[int, httpx.AsyncClient]:
    """The worker the first job was not created on."""
    return list(clients.items())[1]


def test_one_ray_and_one_redis_serve_both_workers(service: ServiceProcess, clients):
    announced = ANNOUNCED_PIDS.search("".join(service.output))
    assert announced, "".join(service.output)
    worker_pids = {int(pid) for pid in announced.groups()}
    assert set(clients) == worker_pids
    serving = psutil.Process(service.process.pid)
    assert {child.pid for child in serving.children()} >= worker_pids
    names = [process.name() for process in serving.children(recursive=True)]
    assert (names.count("gcs_server"), names.count("raylet"), names.count("redis-server")) == (1, 1, 1)


async def test_an_idempotent_retry_on_the_other_worker_returns_the_same_job(clients, first_job):
    pid, other = other_worker(clients)
    retried = await other.post(
        f"/api/v1/workflows/{first_job['workflow_id']}/execute",
        json={"name": "Ada"},
        headers={"Idempotency-Key": "retried-elsewhere"},
    )
    assert served_by(retried) == pid
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == first_job["id"]


async def test_the_other_worker_streams_the_job_over_sse(clients, first_job):
    pid, other = other_worker(clients)
    async with other.stream("GET", f"/api/v1/jobs/{first_job['id']}/events", timeout=30) as stream:
        assert served_by(stream) == pid
        events = await read_sse(stream.aiter_lines())
    kinds = [event.event for event in events]
    assert kinds[0] == "job_started" and kinds[-1] == "job_completed", kinds


async def test_the_other_worker_streams_the_job_over_a_websocket(service, clients, first_job):
    pid, _ = other_worker(clients)
    url = f"{service.ws_url}/ws/jobs/{first_job['id']}?token={USER.token}"
    for _ in range(CONNECTION_ATTEMPTS):
        socket = await read_socket(url, until_type="job_completed")
        if int(socket.handshake_headers[WORKER_HEADER]) == pid:
            break
    else:
        pytest.fail(f"no WebSocket of {CONNECTION_ATTEMPTS} landed on worker {pid}")
    kinds = [message["type"] for message in socket.messages]
    assert kinds[0] == "job_started" and kinds[-1] == "job_completed", kinds


async def test_metrics_on_either_worker_count_the_jobs_and_requests_of_both(clients, first_job):
    """Jobs: the first one (its execute went to the first worker) and one executed on the other. Requests:
    a route no other test calls, twice on the first worker and once on the other."""
    pid, other = other_worker(clients)
    second = await other.post(f"/api/v1/workflows/{first_job['workflow_id']}/execute", json={"name": "Bo"})
    assert served_by(second) == pid
    await wait_for_job(other, USER, second.json()["id"])
    versions = f"/api/v1/workflows/{first_job['workflow_id']}/versions"
    for client in [*clients.values(), next(iter(clients.values()))]:
        assert (await client.get(versions)).status_code == 200
    finished = 'workflow_jobs_finished_total{status="completed"} 2.0'
    for _ in range(METRICS_POLLS):
        answers = [await client.get("/metrics") for client in clients.values()]
        scrapes = {served_by(answer): answer.text for answer in answers}
        if all(finished in text for text in scrapes.values()):
            break
        await asyncio.sleep(METRICS_POLL_S)
    assert set(scrapes) == set(clients)
    route = 'route="/api/v1/workflows/{workflow_id}/versions",status="200"'
    for text in scrapes.values():
        assert "workflow_jobs_started_total 2.0" in text, text
        assert finished in text, text
        assert f'workflow_http_requests_total{{method="GET",{route}}} 3.0' in text, text
        assert re.search(r"^workflow_active_jobs \d", text, re.MULTILINE), text


@pytest.mark.parametrize(
    ("given", "message"), [("0", "must be at least 1, not 0"), ("two", "'two' is not a whole number")]
)
def test_a_worker_count_that_is_not_one_or_more_is_refused(capsys, given: str, message: str):
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--workers", given])
    assert refused.value.code == 2
    assert f"argument --workers: {message}" in capsys.readouterr().err


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path, service: ServiceProcess):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT}
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--workers", "2", "--port", str(service.port)],
        env={**env, "PYTHONPATH": str(REPO), "JWT_SECRET": JWT_SECRET, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"cannot listen on 127.0.0.1:{service.port}: Address already in use" in refused.stderr
    assert not (tmp_path / "redis").exists(), "no embedded Redis started"


async def test_sigterm_ends_open_streams_then_stops_both_workers_ray_and_redis(
    service: ServiceProcess, clients: dict[int, httpx.AsyncClient]
):
    """Last: the service stops here (the module fixture then finds it stopped). A job waits for a signal
    that never comes, watched over SSE on one worker and over a WebSocket: SIGTERM ends both properly."""
    first_pid, first = next(iter(clients.items()))
    workflow = await create_workflow(first, USER, WAITING_FOREVER)
    job = (await first.post(f"/api/v1/workflows/{workflow['id']}/execute", json={})).json()
    sse_open, ws_open = asyncio.Event(), asyncio.Event()

    async def follow_sse() -> tuple[int, list[str]]:
        async with first.stream("GET", f"/api/v1/jobs/{job['id']}/events", timeout=60) as stream:
            kinds = []
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                    sse_open.set()
            return served_by(stream), kinds

    sse = asyncio.create_task(follow_sse())
    url = f"{service.ws_url}/ws/jobs/{job['id']}?token={USER.token}"
    ws = asyncio.create_task(read_socket(url, timeout_s=60, connected=ws_open))
    await asyncio.wait_for(asyncio.gather(sse_open.wait(), ws_open.wait()), 30)

    serving = psutil.Process(service.process.pid)
    tree = [serving, *serving.children(recursive=True)]
    metrics_dir = Path(psutil.Process(first_pid).environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir()
    service.process.send_signal(signal.SIGTERM)
    (sse_pid, kinds), socket = await asyncio.wait_for(asyncio.gather(sse, ws), 60)
    assert sse_pid == first_pid and kinds[0] == "job_started", kinds
    assert socket.close_code == 1012, socket  # service restart: the client resumes elsewhere with ?after=
    assert await asyncio.to_thread(service.process.wait, 90) == 0, "".join(service.output)
    _, alive = await asyncio.to_thread(psutil.wait_procs, tree, 30)
    assert alive == [], alive
    assert not metrics_dir.exists()
