"""recovery: kill -9 a job actor mid-job; how long until the restarted actor runs the job again."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from typing import Any

from actors.ray_runtime import ray_api
from bench.fanout import llm_server
from bench.harness import create_workflow, median, service

TARGET_S = 3.0
RUNS = 3
CHAIN = [f"step{i}" for i in range(5)]


def chain_of_llm_calls() -> dict[str, Any]:
    nodes = [
        {"id": n, "type": "llm", "config": {"model": "bench", "prompt": f"{n}: {{{{input.q}}}}"}}
        for n in CHAIN
    ]
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(CHAIN)]
    return {"name": "recovery", "nodes": nodes, "edges": edges}


async def one_recovery(runtime: Any, workflow_id: str) -> float:
    job = await runtime.controller.execute_workflow(workflow_id, {"q": "x"}, owner="bench")
    events = runtime.bus.subscribe(job.id)
    async for event in events:
        if event.type == "node_started" and event.node_id == CHAIN[2]:
            break
    handle = ray_api.get_actor(f"job:{job.id}", runtime.runtime.namespace)
    assert handle is not None, f"job {job.id} has no actor"
    info = await ray_api.JobActorHandle(handle).info()
    killed = time.perf_counter()
    os.kill(int(info["pid"]), signal.SIGKILL)
    try:
        async for event in events:
            if event.type == "node_started" and event.data.get("resumed"):
                return time.perf_counter() - killed
    finally:
        await events.aclose()
    raise RuntimeError("the job ended without resuming")


async def run() -> dict[str, Any]:
    with llm_server(latency_s=0.5) as url:
        async with service(MODEL_SERVICE_URL=url, WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=2) as runtime:
            workflow_id = await create_workflow(runtime, chain_of_llm_calls())
            await asyncio.sleep(2)
            seconds = [await asyncio.wait_for(one_recovery(runtime, workflow_id), 60) for _ in range(RUNS)]
    value = median(seconds)
    return {
        "kill_to_running_again_s_median": round(value, 2),
        "runs_s": [round(s, 2) for s in seconds],
        "target": f"<= {TARGET_S} s",
        "target_met": value <= TARGET_S,
    }
