"""chain100: one job of 100 sequential transform nodes, each checkpointed; per-node overhead."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from actors.ray_runtime import ray_api
from bench.harness import chain_definition, create_workflow, median, service

TARGET_MS = 2.5
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


async def run() -> dict[str, Any]:
    async with service(WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=4) as runtime:
        floor = await ray_round_trip_floor()
        workflow_id = await create_workflow(runtime, chain_definition(100))
        per_node: list[float] = []
        totals: list[float] = []
        for _ in range(RUNS):
            job = await runtime.controller.execute_workflow(workflow_id, {}, owner="bench")
            times = [e.time async for e in runtime.bus.subscribe(job.id) if e.type == "node_completed"]
            steps = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(times)]
            per_node.extend(steps)
            totals.append((times[-1] - times[0]).total_seconds() * 1000)
            await asyncio.sleep(0.2)
    value = median(per_node)
    return {
        "per_node_ms_median": round(value, 3),
        "job_ms_median": round(median(totals), 1),
        "floor": round(floor, 3),
        "floor_what": "median ms of one plain Ray task round trip, 100 in sequence",
        "ratio_to_floor": round(value / floor, 3),
        "target": f"per-node overhead <= {TARGET_MS} ms median",
        "target_met": value <= TARGET_MS,
    }
