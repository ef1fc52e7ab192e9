"""The agent node on a real local Ray: its model turns in an executor against the real test LLM server,
its tools where their types run (record_io in an executor, code in the sandbox as a Ray task); kill -9 of
the job actor mid-run and a cancel mid tool call."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from engine.models import WorkflowDefinition
from engine.records import EventType, JobStatus
from tests.support.openai_server import OpenAITestServer, ScriptedReply
from tests.support.ray_jobs import end_runtime, execute, finished, job_actor, settings_for, wait_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SECONDS = {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as running:
        yield running


@pytest.fixture
def server(model_server: OpenAITestServer) -> OpenAITestServer:
    """The module's test LLM server, what earlier tests asked of it and scripted forgotten."""
    model_server.forget()
    return model_server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent_runtime(
    ray_cluster: object, model_server: OpenAITestServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceRuntime]:
    """One runtime calling the module's LLM server, for the tests that kill nothing."""
    runtime = await start_service_runtime(
        settings_for(tmp_path_factory.mktemp("agent-runtime"), MODEL_SERVICE_URL=model_server.url)
    )
    yield runtime
    await end_runtime(runtime)


def agent(ledger: Path, *tools: dict[str, Any]) -> dict[str, Any]:
    wait = {
        "name": "wait",
        "description": "waits",
        "parameters": SECONDS,
        "node": {"type": "record_io", "config": {"path": str(ledger), "seconds": "{{args.seconds}}"}},
    }
    return {"id": "agent", "type": "agent", "config": {"model": "m", "prompt": "go", "tools": [wait, *tools]}}


def lines(ledger: Path, event: str) -> list[list[str]]:
    text = ledger.read_text() if ledger.exists() else ""
    return [line.split() for line in text.splitlines() if line.split()[3] == event]


async def start(runtime: ServiceRuntime, ledger: Path, *tools: dict[str, Any]) -> Any:
    return runtime, await execute(runtime, [agent(ledger, *tools)], [], name="agent-test")


def wait_call(seconds: float) -> tuple[str, Any]:
    return ("wait", {"seconds": seconds})


@pytest.mark.timeout(120)
async def test_parallel_calls_of_two_tools_run_in_an_executor_and_in_the_sandbox(
    agent_runtime, server, tmp_path
):
    ledger = tmp_path / "ledger"
    code = {
        "name": "square",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "node": {
            "type": "code",
            "config": {"code": "def process(n):\n    return n * n", "input_mapping": {"n": "{{args.n}}"}},
        },
    }
    server.script(
        ScriptedReply(tool_calls=(wait_call(0.5), wait_call(0.5), ("square", {"n": 7}))),
        ScriptedReply(text="done"),
    )
    runtime, job = await start(agent_runtime, ledger, code)
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    output = done.nodes["agent"].output
    calls = output["steps"][0]["tool_calls"]
    assert [c["output"]["key"] for c in calls[:2]] == [f"{job.id}:agent:1:0:0", f"{job.id}:agent:1:0:1"]
    assert calls[2]["output"] == 49 and output["text"] == "done"
    (first, second) = [float(line[5]) for line in lines(ledger, "start")]
    ends = [float(line[5]) for line in lines(ledger, "done")]
    assert max(first, second) < min(ends), "the two calls of one turn ran at the same time"
    events = [e async for e in runtime.bus.subscribe(job.id)]
    kinds = [e.type for e in events]
    assert kinds.count(EventType.AGENT_STEP) == 2
    assert kinds.count(EventType.TOOL_CALL_STARTED) == kinds.count(EventType.TOOL_CALL_FINISHED) == 3


@pytest.mark.timeout(120)
async def test_kill_9_mid_run_resumes_without_repeating_a_finished_model_or_tool_call(
    make_runtime, server, tmp_path
):
    ledger = tmp_path / "ledger"
    server.script(
        ScriptedReply(tool_calls=(wait_call(0), wait_call(0))),
        ScriptedReply(tool_calls=(wait_call(3),)),
        ScriptedReply(text="all done"),
    )
    runtime, job = await start(await make_runtime(MODEL_SERVICE_URL=server.url), ledger)
    assert await wait_until(lambda: _true(len(lines(ledger, "start")) == 3), timeout_s=30)
    info = await (await job_actor(runtime, job.id)).info()
    os.kill(int(info["pid"]), signal.SIGKILL)

    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert len(server.requests) == 3, "no finished model call was made again"
    keys = [line[6] for line in lines(ledger, "start")]
    turn0 = [f"{job.id}:agent:1:0:0", f"{job.id}:agent:1:0:1"]
    interrupted = f"{job.id}:agent:1:1:0"
    assert sorted(keys[:2]) == turn0 and keys.count(turn0[0]) == keys.count(turn0[1]) == 1, (
        "no finished tool call ran again"
    )
    assert keys.count(interrupted) == 2, "the interrupted call ran again, with the same key"
    output = done.nodes["agent"].output
    assert (
        output["text"] == "all done" and output["steps"][1]["tool_calls"][0]["output"]["key"] == interrupted
    )
    assert [r.headers["Idempotency-Key"] for r in server.requests] == [
        f"{job.id}:agent:1:{t}" for t in range(3)
    ]


@pytest.mark.timeout(60)
async def test_a_cancel_mid_tool_call_stops_the_call_and_cancels_the_job(agent_runtime, server, tmp_path):
    ledger = tmp_path / "ledger"
    server.script(ScriptedReply(tool_calls=(wait_call(2),)), ScriptedReply(text="never"))
    runtime, job = await start(agent_runtime, ledger)
    assert await wait_until(lambda: _true(len(lines(ledger, "start")) == 1), timeout_s=30)
    await runtime.controller.cancel_job(job.id)
    done = await wait_for(runtime, job.id, finished, timeout_s=10)
    assert done.status is JobStatus.CANCELLED
    await asyncio.sleep(2.5)
    assert lines(ledger, "done") == [], "the tool call's coroutine was cancelled in its executor"
    assert len(server.requests) == 1


@pytest.mark.timeout(120)
async def test_a_workflow_tool_pauses_the_agent_for_a_child_job_and_goes_on_with_its_result(
    agent_runtime, server, tmp_path
):
    runtime: ServiceRuntime = agent_runtime
    double = {
        "name": "double",
        "nodes": [{"id": "twice", "type": "transform", "config": {"template": {"n": "{{input.n * 2}}"}}}],
        "edges": [],
    }
    child = await runtime.store.create_workflow("alice", WorkflowDefinition.model_validate(double))
    tool = {
        "name": "double",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "node": {"type": "workflow", "config": {"workflow_id": child.id, "input": {"n": "{{args.n}}"}}},
    }
    server.script(ScriptedReply(tool_calls=(("double", {"n": 21}),)), ScriptedReply(text="it is 42"))
    config = {"model": "m", "prompt": "double 21", "tools": [tool]}
    job = await execute(runtime, [{"id": "agent", "type": "agent", "config": config}], [], name="agent-child")
    assert job.called_versions == {child.id: 1}, "the tool's workflow is pinned when the job is created"
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    node = done.nodes["agent"]
    assert node.output["text"] == "it is 42" and node.attempts == 1
    assert node.output["steps"][0]["tool_calls"][0]["output"] == {"twice": {"n": 42}}
    assert node.wait is not None
    child_job = await runtime.store.get_job(node.wait.settings["child_job_id"])
    assert child_job.status is JobStatus.COMPLETED and child_job.parent_job_id == job.id
    assert len(server.requests) == 2, "the first model turn was not made again after the wait"
    kinds = [event.type async for event in runtime.bus.subscribe(job.id)]
    assert EventType.CHILD_JOB_STARTED in kinds and EventType.CHILD_JOB_FINISHED in kinds


@pytest.mark.timeout(120)
async def test_on_ray_an_invalid_call_is_corrected_max_steps_ends_an_agent_and_its_text_streams(
    agent_runtime, server, tmp_path
):
    runtime: ServiceRuntime = agent_runtime
    shout = {
        "name": "shout",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "node": {"type": "transform", "config": {"template": "{{args.text | upper}}"}},
    }
    server.script(
        ScriptedReply(tool_calls=(("shout", {"words": "hi"}),)),
        ScriptedReply(tool_calls=(("shout", {"text": "hi"}),)),
        ScriptedReply(text="HI it is"),
    )
    config = {"model": "m", "prompt": "shout hi", "tools": [shout], "stream": True}
    job = await execute(runtime, [{"id": "agent", "type": "agent", "config": config}], [], name="agent-fix")
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    first, second, _ = done.nodes["agent"].output["steps"]
    assert "'text' is a required property" in first["tool_calls"][0]["error"]
    assert second["tool_calls"][0]["output"] == "HI"
    tokens = [
        e for e in [event async for event in runtime.bus.subscribe(job.id)] if e.type == EventType.LLM_TOKEN
    ]
    assert "".join(e.data["text"] for e in tokens if e.node_id == "agent").endswith("HI it is"), (
        "the model's streamed text reaches the job's events from the job's actor"
    )

    server.script(*[ScriptedReply(tool_calls=(("shout", {"text": str(n)}),)) for n in range(2)])
    config = {"model": "m", "prompt": "loop", "tools": [shout], "max_steps": 2}
    job = await execute(runtime, [{"id": "agent", "type": "agent", "config": config}], [], name="agent-max")
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.FAILED and done.nodes["agent"].error is not None
    assert "reached max_steps (2)" in done.nodes["agent"].error.message


async def _true(value: bool) -> bool:
    return value
