"""chain100: one job of 100 llm nodes in a row against the test server at 0 ms, each a durable step (its
result checkpointed and published before the next node starts): the cost of a step beyond its model call.
chain100-inline: 100 transform nodes in a row, which are pure, so they end within the commit that starts
them: the cost of a folded node, and of the whole chain.

An llm node's step is the time from the previous node's `node_completed` event to its own (each is in a
commit of its own, timed to the microsecond): the commit of the previous result, the call through an
executor actor and the model call. The folded chain's events share one commit, and the store keeps times
to the millisecond, so its per-node cost is the span of its stored checkpoints (first node's start to last
node's finish) over its 100 nodes: rendering and running each in the job actor.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.fanout import llm_server
from bench.harness import (
    chain_definition,
    create_workflow,
    llm_chain_definition,
    median,
    service,
    warm_pool_ready,
)

STEPS = 100
TARGET_STEP_MS = 3.0
RUNS = 5


def _noop() -> int:
    return 1


async def ray_round_trip_floor(trips: int = 100) -> float:
    """Median ms of sequential plain Ray task round trips (the floor for a node launched remotely)."""
    await ray_api.result(ray_api.submit_task(_noop, name="bench:warmup", num_cpus=0))
    samples = []
    for _ in range(trips):
        started = time.perf_counter()
        await ray_api.result(ray_api.submit_task(_noop, name="bench:noop", num_cpus=0))
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


async def _chain_runs(runtime: ServiceRuntime, definition: dict[str, Any]) -> dict[str, list[float]]:
    """RUNS jobs of the chain, one at a time after a warm-up job: the ms between consecutive node_completed
    events, each chain's span (first node's start to last node's finish, ms), each job's execute ->
    job_completed (ms) and its commits."""
    workflow_id = await create_workflow(runtime, definition)
    measured: dict[str, list[float]] = {"steps": [], "spans": [], "walls": [], "commits": []}
    for run in range(RUNS + 1):
        await warm_pool_ready(runtime)
        started = time.perf_counter()
        job = await runtime.controller.execute_workflow(workflow_id, {}, owner="bench")
        completed = [e.time async for e in runtime.bus.subscribe(job.id) if e.type == "node_completed"]
        wall = (time.perf_counter() - started) * 1000
        done = await runtime.store.get_job(job.id)
        assert done.status.value == "completed", done.error
        first_start, last_finish = done.nodes["n0"].started_at, done.nodes[f"n{STEPS - 1}"].finished_at
        assert first_start is not None and last_finish is not None
        if run > 0:
            measured["steps"].extend((b - a).total_seconds() * 1000 for a, b in itertools.pairwise(completed))
            measured["spans"].append((last_finish - first_start).total_seconds() * 1000)
            measured["walls"].append(wall)
            measured["commits"].append(done.version - job.version)
        await asyncio.sleep(0.2)
    return measured


async def run() -> dict[str, Any]:
    """chain100: llm nodes, each checkpointed."""
    with llm_server(latency_s=0.0) as url:
        async with service(MODEL_SERVICE_URL=url, WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=4) as runtime:
            floor = await ray_round_trip_floor()
            measured = await _chain_runs(runtime, llm_chain_definition(STEPS))
    step = median(measured["steps"])
    return {
        "per_step_ms_median": round(step, 3),
        "chain_ms_median": round(median(measured["spans"]), 1),
        "job_ms_median": round(median(measured["walls"]), 1),
        "commits_per_job": median(measured["commits"]),
        "floor": round(floor, 3),
        "floor_what": "median ms of one plain Ray task round trip, 100 in sequence",
        "ratio_to_floor": round(step / floor, 3),
        "target": f"per-step <= {TARGET_STEP_MS} ms median (llm at 0 ms, checkpointed)",
        "target_met": step <= TARGET_STEP_MS,
    }


async def run_inline() -> dict[str, Any]:
    """chain100-inline: transform nodes, folded into one commit."""
    async with service(WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=4) as runtime:
        measured = await _chain_runs(runtime, chain_definition(STEPS))
    commits = median(measured["commits"])
    span = median(measured["spans"])
    return {
        "per_node_ms": round(span / STEPS, 3),
        "chain_ms_median": round(span, 1),
        "job_ms_median": round(median(measured["walls"]), 1),
        "commits_per_job": commits,
        "target": "reported; the whole chain in one commit",
        "target_met": commits == 1,
    }
