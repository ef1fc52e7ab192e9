"""Every example runs through `workflow-service run` in-process: against the OpenAI-compatible test server
(LLM nodes), a local JSON API (the http node), the bubblewrap sandbox (the code node). These share the
session's Ray; one test runs the real command in a subprocess with its own Ray, and one interrupts it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Iterator

import pytest

from tests.cli.support import EXAMPLES, REPO, ApiServer, run_cli
from tests.support import ray_test_api
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.slow

SECRET = "s3cret-api-key"
BOUNDED = ("--timeout", "60")
PROGRESS_LINE = re.compile(r"\[\s*\d+\.\ds\] ")
"""A line of the run's progress (cli/progress.py), as opposed to what Ray logs to the same stderr."""
"""A bug that keeps a job from ending cancels it after a minute instead of hanging the test run."""
NAP_CODE = "import time\n\ndef process():\n    time.sleep(60)\n"
SLEEPER = {
    "name": "sleeper",
    "nodes": [
        {"id": "nap", "type": "code", "config": {"code": NAP_CODE}},
        {"id": "after", "type": "end"},
    ],
    "edges": [{"source": "nap", "target": "after"}],
}
DOCUMENTS = [f"Document number {i} is about topic {i % 3}." for i in range(16)]


@pytest.fixture
def llm_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(latency_s=0.2, json_reply={"category": "technical"}) as server:
        yield server


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def cli_env(monkeypatch, tmp_path, ray_cluster, llm_server):
    """What an operator would export before `workflow-service run`."""
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"api_key": SECRET}))
    for name, value in {
        "MODEL_SERVICE_URL": llm_server.url,
        "SECRETS_FILE": str(secrets),
        "HTTP_ALLOW_PRIVATE_NETWORKS": "true",
        "EXECUTOR_POOL_SIZE": "1",
        "MAX_ACTIVE_JOBS": "2",
        "JOB_ACTOR_MODE": "reuse",
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    return ray_cluster


def no_run_actors_left() -> bool:
    return not [space for space in ray_test_api.named_actor_namespaces() if space.startswith("workflow-run-")]


@pytest.mark.timeout(90)
async def test_customer_support_classifies_routes_and_answers(cli_env, llm_server, capsys):
    result = await run_cli(
        capsys,
        "run",
        str(EXAMPLES / "customer-support.json"),
        "--input",
        '{"message": "My router drops the VPN every hour"}',
        *BOUNDED,
    )
    assert result.code == 0, result.err
    outcome = result.outcome
    assert outcome["status"] == "completed"
    assert outcome["result"]["classify"]["category"] == "technical"
    answer = outcome["result"]["technical_support"]["text"]
    assert answer == "echo: Answer this customer inquiry: My router drops the VPN every hour"
    assert "general_support" not in outcome["result"]
    lines = result.err.splitlines()
    assert any(re.search(r"classify\s+completed in", line) for line in lines), result.err
    assert any(re.search(r"general_support\s+skipped", line) for line in lines), result.err
    progress = [line for line in lines if PROGRESS_LINE.match(line)]
    assert progress[-1].endswith("job completed"), "the job's last event (Ray may log after it)"
    prompts = [request.body["messages"][-1]["content"] for request in llm_server.requests]
    assert prompts[0] == "Classify this customer inquiry: My router drops the VPN every hour"
    assert llm_server.requests[0].body["response_format"] == {"type": "json_object"}
    assert len(prompts) == 2, "one classification, one answer: the general branch never called the model"
    assert no_run_actors_left()


@pytest.mark.timeout(90)
async def test_code_node_doubles_in_the_sandbox(cli_env, capsys):
    result = await run_cli(
        capsys, "run", str(EXAMPLES / "code-node.json"), "--input", '{"value": 21}', *BOUNDED
    )
    assert result.code == 0, result.err
    assert result.outcome["result"] == {"output": 42}


@pytest.mark.timeout(90)
async def test_http_node_posts_with_the_secret_and_masks_it_in_the_result(cli_env, api_server, capsys):
    given = {"endpoint": api_server.url("/endpoint"), "data": "hello"}
    result = await run_cli(
        capsys, "run", str(EXAMPLES / "http-node.json"), "--input", json.dumps(given), *BOUNDED
    )
    assert result.code == 0, result.err
    assert [request.path for request in api_server.requests] == ["/endpoint"]
    assert api_server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert api_server.requests[0].body == {"data": "hello"}
    outcome = result.outcome
    assert outcome["result"]["status"] == 200
    assert outcome["result"]["response"] == {"received": {"data": "hello"}, "authorization": "Bearer ***"}
    assert SECRET not in result.out + result.err


@pytest.mark.timeout(90)
async def test_a_failed_job_exits_1_with_its_error(cli_env, api_server, capsys):
    given = {"endpoint": api_server.url("/forbidden"), "data": "x"}
    result = await run_cli(
        capsys, "run", str(EXAMPLES / "http-node.json"), "--input", json.dumps(given), *BOUNDED
    )
    assert result.code == 1
    outcome = result.outcome
    assert outcome["status"] == "failed"
    assert "403" in outcome["error"]["message"]
    assert re.search(r"http_node\s+failed in [0-9.]+ s: .*403", result.err), result.err
    assert re.search(r"end\s+", result.err) is None, "the end node never ran"


@pytest.mark.timeout(90)
async def test_fan_out_shows_a_progress_bar_and_keeps_input_order(cli_env, llm_server, tmp_path, capsys):
    given = tmp_path / "documents.json"
    given.write_text(json.dumps({"documents": DOCUMENTS}))
    result = await run_cli(capsys, "run", str(EXAMPLES / "fan-out.json"), "--input", f"@{given}", *BOUNDED)
    assert result.code == 0, result.err
    outcome = result.outcome["result"]
    assert outcome["succeeded"] == 16 and outcome["failed"] == 0
    assert [summary["text"] for summary in outcome["summaries"]] == [
        f"echo: Summarize document {i} in one sentence: {doc}" for i, doc in enumerate(DOCUMENTS)
    ]
    bars = [
        tuple(map(int, match.groups()))
        for match in re.finditer(r"summarize\s+\[[#x-]+\]\s+(\d+)/(\d+)", result.err)
    ]
    assert len(bars) >= 2, result.err
    assert bars[-1] == (16, 16)
    assert [done for done, _ in bars] == sorted(done for done, _ in bars)
    assert llm_server.peak_open <= 4, "the map node's max_concurrency held"


@pytest.mark.timeout(90)
async def test_timeout_cancels_the_job_and_exits_1(cli_env, tmp_path, capsys):
    path = tmp_path / "sleeper.json"
    path.write_text(json.dumps(SLEEPER))
    result = await run_cli(capsys, "run", str(path), "--timeout", "3")
    assert result.code == 1
    assert result.outcome["status"] == "cancelled"
    assert "did not finish within 3 s: cancelling it" in result.err
    assert re.search(r"job cancelled", result.err), result.err


def cli_subprocess_env(llm_server: OpenAITestServer) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MODEL_SERVICE_URL": llm_server.url,
        "EXECUTOR_POOL_SIZE": "1",
        "LOG_LEVEL": "WARNING",
    }


@pytest.mark.timeout(120)
async def test_the_installed_command_runs_an_example_in_a_subprocess(llm_server, tmp_path):
    process = await asyncio.create_subprocess_exec(
        "workflow-service",
        "run",
        str(EXAMPLES / "customer-support.json"),
        "--input",
        '{"message": "How do I reset my password?"}',
        cwd=tmp_path,
        env=cli_subprocess_env(llm_server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=100)
    assert process.returncode == 0, err.decode()
    outcome = json.loads(out)
    assert outcome["status"] == "completed"
    assert outcome["result"]["technical_support"]["text"].endswith("How do I reset my password?")
    assert "job completed" in err.decode()
    assert list(tmp_path.iterdir()) == [], "the temporary data directory was removed, nothing left in cwd"


@pytest.mark.timeout(120)
async def test_ctrl_c_cancels_the_running_job_and_exits_1(llm_server, tmp_path):
    path = tmp_path / "sleeper.json"
    path.write_text(json.dumps(SLEEPER))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "run",
        str(path),
        cwd=tmp_path,
        env=cli_subprocess_env(llm_server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(90):
        while not any(re.search(r"nap\s+running", line) for line in seen):
            line = await process.stderr.readline()
            assert line, "the command ended early:\n" + "".join(seen)
            seen.append(line.decode())
    process.send_signal(signal.SIGINT)
    started = asyncio.get_running_loop().time()
    rest, out = await asyncio.wait_for(
        asyncio.gather(process.stderr.read(), process.stdout.read()), timeout=60
    )
    assert await process.wait() == 1
    outcome = json.loads(out)
    assert outcome["status"] == "cancelled"
    assert "cancelling the job" in rest.decode()
    assert asyncio.get_running_loop().time() - started < 30, "cancelling did not wait for the 60 s sleep"
