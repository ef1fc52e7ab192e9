"""Loop nodes on a real local Ray: iterations of inline, executor (I/O) and llm nodes against the test LLM
server, `until` stopping early, `max_iterations` both ways, the state threaded through the iterations, and
kill -9 of the job actor mid-loop resuming at the iteration it was on."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.records import EventType, JobStatus, NodeStatus
from tests.support.openai_server import OpenAITestServer
from tests.support.ray_jobs import RuntimeFactory, execute, finished, job_actor, record, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def llm_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(latency_s=0.0) as server:
        yield server


def loop(node_id: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str]], **config: Any) -> dict:
    graph = {"nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    return {"id": node_id, "type": "loop", "config": {"graph": graph, **config}}


def transform(node_id: str, template: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "config": {"template": template}}


def starts(ledger: Path) -> list[str]:
    return [line.split()[1] for line in ledger.read_text().splitlines() if line.split()[3] == "start"]


@pytest.mark.timeout(120)
async def test_loops_stop_at_until_or_max_iterations_threading_their_state(
    make_runtime: RuntimeFactory, llm_server: OpenAITestServer, tmp_path: Path
):
    runtime = await make_runtime(MODEL_SERVICE_URL=llm_server.url)
    ledger = tmp_path / "ledger"
    count = loop(
        "count",
        [transform("add", {"n": "{{iteration.state.n + input.q}}", "seen": "{{iteration.output}}"})],
        [],
        state={"n": 10},
        until="{{iteration.output.n}} >= 13",
    )
    io_then_inline = loop(
        "capped",
        [record("io", ledger), transform("next", "{{iteration.state}}+{{iteration.index}}")],
        [("io", "next")],
        state="s",
        max_iterations=3,
    )
    never = loop("never", [transform("same", 0)], [], until="{{iteration.output}} == 1", max_iterations=2)
    never_but_last = loop(
        "last", [transform("same", 0)], [], until="{{iteration.output}} == 1", on_max_iterations="return_last"
    )
    ask = loop(
        "ask",
        [
            {
                "id": "llm",
                "type": "llm",
                "config": {"model": "test-model", "prompt": "{{iteration.state.text}}"},
            }
        ],
        [],
        state={"text": "hi"},
        until="{{iteration.index}} == 2",
    )
    never["on_error"] = "continue"
    job = await execute(runtime, [count, io_then_inline, never, never_but_last, ask], [])
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error

    output = done.nodes["count"].output
    assert (output["iterations"], output["stopped_by"], output["state"]["n"]) == (3, "until", 13)
    assert [step["n"] for step in output["outputs"]] == [11, 12, 13]
    assert output["outputs"][0]["seen"] is None and output["outputs"][2]["seen"] == output["outputs"][1]

    capped = done.nodes["capped"].output
    assert (capped["iterations"], capped["stopped_by"], capped["state"]) == (3, "max_iterations", "s+0+1+2")
    assert starts(ledger) == ["capped[0].io", "capped[1].io", "capped[2].io"], "I/O nodes ran in an executor"

    assert done.nodes["never"].status is NodeStatus.FAILED
    assert "until did not hold after max_iterations (2)" in str(done.nodes["never"].error)
    last = done.nodes["last"].output
    assert (last["iterations"], last["stopped_by"], last["outputs"]) == (10, "max_iterations", [0] * 10)

    answers = done.nodes["ask"].output
    assert answers["iterations"] == 3 and len(llm_server.requests) == 3
    prompts = [request.body["messages"][-1]["content"] for request in llm_server.requests]
    assert prompts == ["hi", "echo: hi", "echo: echo: hi"], "each answer is the next iteration's state"
    assert done.nodes["ask"].usage is not None and done.nodes["ask"].usage["total_tokens"] > 0

    events = [event async for event in runtime.bus.subscribe(job.id)]
    counted = [
        event.data for event in events if event.type == EventType.LOOP_ITERATION and event.node_id == "count"
    ]
    assert counted == [
        {"index": 0, "until_held": False},
        {"index": 1, "until_held": False},
        {"index": 2, "until_held": True},
    ]


@pytest.mark.timeout(120)
async def test_a_loop_killed_mid_run_resumes_at_its_iteration_without_running_finished_ones_again(
    make_runtime: RuntimeFactory, tmp_path: Path
):
    runtime = await make_runtime()
    ledger = tmp_path / "ledger"
    work = loop(
        "work",
        [record("io", ledger, seconds=0.3), transform("next", "{{iteration.state}}{{iteration.index}}")],
        [("io", "next")],
        state="",
        max_iterations=5,
    )
    job = await execute(runtime, [work], [])
    seen = await wait_for(
        runtime, job.id, lambda job: "work" in job.nodes and len(job.nodes["work"].steps) >= 2
    )
    checkpointed = len(seen.nodes["work"].steps)
    os.kill(int((await (await job_actor(runtime, job.id)).info())["pid"]), signal.SIGKILL)
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.nodes["work"].output["state"] == "01234"
    ran = starts(ledger)
    assert sorted(set(ran)) == [f"work[{index}].io" for index in range(5)]
    assert checkpointed < 5, "killed mid-loop"
    assert [ran.count(f"work[{index}].io") for index in range(checkpointed)] == [1] * checkpointed, (
        "finished iterations did not run again"
    )
    assert all(ran.count(f"work[{index}].io") <= 2 for index in range(5)), (
        "only the interrupted one ran twice"
    )

    events = [event async for event in runtime.bus.subscribe(job.id)]
    assert any(e.type == EventType.NODE_STARTED and e.data.get("resumed") for e in events), "it was resumed"
    iterations = [event.data for event in events if event.type == EventType.LOOP_ITERATION]
    assert {data["index"] for data in iterations} == set(range(5))
    assert [data["until_held"] for data in iterations] == [False] * len(iterations)
