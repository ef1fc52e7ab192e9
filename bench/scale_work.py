"""The `scale` curves of work inside one job, on one service runtime and one 0 ms LLM test server:
a chain of 10 / 100 / 1,000 llm steps (per-step cost), and a map of 1,000 / 10,000 / 100,000 llm items at
a cap of 1,000 (time and peak memory per item). Reuse mode: each job runs on the one warm runner, so no job
shares the machine with the start of the actor that replaces the one it took (dedicated mode), a cost of
the job's start, not of its steps or items."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.fanout import llm_server, map_workflow
from bench.harness import RssSampler, create_workflow, llm_chain_definition, median, service, warm_pool_ready
from bench.scale_curves import curve, flat

CHAIN_RUNS = {10: 5, 100: 3, 1000: 2}
"""Jobs run at each chain length: more of the short ones, whose few steps make a noisier mean."""
MAP_SIZES = (1000, 10_000, 100_000)
MAP_CAP = 1000
MAP_WARM_UP = 1000
MAP_MEMORY_LIMIT_MB = 2048


async def _step_ms(runtime: ServiceRuntime, workflow_id: str, size: int) -> float:
    """One job's mean ms per step: from its first node's end to its last's, over the steps between."""
    await warm_pool_ready(runtime)
    job = await runtime.controller.execute_workflow(workflow_id, {}, owner="bench")
    ends = [e.time async for e in runtime.bus.subscribe(job.id) if e.type == "node_completed"]
    if len(ends) != size:
        raise RuntimeError(f"a chain of {size} steps completed {len(ends)} of them")
    return (ends[-1] - ends[0]).total_seconds() * 1000 / (size - 1)


async def chain_curve(runtime: ServiceRuntime) -> dict[str, Any]:
    per_step: dict[int, float] = {}
    for size, runs in CHAIN_RUNS.items():
        workflow_id = await create_workflow(runtime, llm_chain_definition(size))
        per_step[size] = median([await _step_ms(runtime, workflow_id, size) for _ in range(runs)])
    figures = curve("per_step_ms", per_step)
    return {
        **figures,
        "runs": {str(size): runs for size, runs in CHAIN_RUNS.items()},
        "note": "llm nodes at 0 ms in sequence; a step's cost is the mean time between node ends, "
        "the median over the runs",
        "target": "per-step cost at 1,000 steps <= 1.5x at 10",
        "target_met": flat(figures),
    }


@dataclass(frozen=True)
class MapPoint:
    wall_s: float
    rss_growth_mb: float
    rss_peak_mb: float
    service_rss_peak_mb: float


async def _map_point(runtime: ServiceRuntime, workflow_id: str, size: int) -> MapPoint:
    await warm_pool_ready(runtime)
    items = [f"document {i}" for i in range(size)]
    sampler = RssSampler(os.getpid())
    sampler.start()
    started = time.perf_counter()
    job = await runtime.controller.execute_workflow(workflow_id, {"items": items}, owner="bench")
    last = [e.type async for e in runtime.bus.subscribe(job.id)][-1]
    wall = time.perf_counter() - started
    sampler.stop()
    if last != "job_completed":
        raise RuntimeError(
            f"the map of {size} items ended with {last}: {(await runtime.store.get_job(job.id)).error}"
        )
    return MapPoint(
        wall_s=wall,
        rss_growth_mb=(sampler.peak - sampler.baseline) / 2**20,
        rss_peak_mb=sampler.peak / 2**20,
        service_rss_peak_mb=sampler.service_peak / 2**20,
    )


async def map_curve(runtime: ServiceRuntime) -> dict[str, Any]:
    workflow_id = await create_workflow(runtime, map_workflow(MAP_CAP))
    await _map_point(runtime, workflow_id, MAP_WARM_UP)
    points = {size: await _map_point(runtime, workflow_id, size) for size in MAP_SIZES}
    time_curve = curve("ms_per_item", {size: p.wall_s * 1000 / size for size, p in points.items()})
    memory_curve = curve(
        "kb_per_item", {size: p.rss_growth_mb * 1024 / size for size, p in points.items()}, 2
    )
    largest = points[MAP_SIZES[-1]]
    return {
        **time_curve,
        **memory_curve,
        "wall_s": {str(size): round(p.wall_s, 2) for size, p in points.items()},
        "rss_peak_mb": {str(size): round(p.rss_peak_mb) for size, p in points.items()},
        "service_rss_peak_mb": {str(size): round(p.service_rss_peak_mb) for size, p in points.items()},
        "note": "one map job of llm items at 0 ms, max_concurrency and LLM_MAX_CONCURRENCY 1,000, after a "
        "warm-up map; an item's time is execute -> job_completed over the items, its memory the whole "
        "service's RSS growth (peak less baseline, Ray's processes included) over the items; "
        "service_rss_peak_mb leaves Ray's own daemons and idle workers out",
        "target": f"ratios <= 1.5; the 100,000-item map's service RSS peak <= {MAP_MEMORY_LIMIT_MB} MB",
        "target_met": flat({**time_curve, **memory_curve})
        and largest.service_rss_peak_mb <= MAP_MEMORY_LIMIT_MB,
    }


async def run() -> dict[str, dict[str, Any]]:
    with llm_server(latency_s=0.0, max_in_flight=MAP_CAP) as url:
        async with service(
            MODEL_SERVICE_URL=url,
            LLM_MAX_CONCURRENCY=MAP_CAP,
            JOB_ACTOR_MODE="reuse",
            WARM_POOL_SIZE=1,
            MAX_ACTIVE_JOBS=2,
        ) as runtime:
            chain = await chain_curve(runtime)
            fan = await map_curve(runtime)
    return {"scale-chain": chain, "scale-map": fan}
