"""fanout1000: one job whose map node makes 1,000 llm calls to a local OpenAI-compatible server
(200 ms each, at most 200 served at once, the rest queue), against plain asyncio with a bare client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import (
    RssSampler,
    bare_worker_rss,
    create_workflow,
    median,
    service,
    warm_pool_ready,
)
from bench.raw_client import fan_out

CALLS, IN_FLIGHT, LATENCY_S = 1000, 200, 0.2
TARGET_RATIO = 1.15
RUNS = 9
"""Rounds measured after one warm-up round; each round runs the floor, then the job, so both meet the
same state of this shared machine, and the ratio is of the two medians."""


@contextmanager
def llm_server(
    latency_s: float = LATENCY_S, tool_rounds: str | None = None, max_in_flight: int = IN_FLIGHT
) -> Iterator[str]:
    """The test server in its own process, as a real provider would be; `tool_rounds` ("ROUNDSxCALLS")
    makes it answer requests that offer tools with tool calls (tests/support/openai_server.py)."""
    command = [
        sys.executable,
        "-m",
        "tests.support.openai_server",
        "--latency",
        str(latency_s),
        "--max-in-flight",
        str(max_in_flight),
    ]
    if tool_rounds is not None:
        command += ["--tool-rounds", tool_rounds]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def map_workflow(max_concurrency: int = IN_FLIGHT) -> dict[str, Any]:
    child = {"type": "llm", "config": {"model": "bench", "prompt": "summarise item {{index}}: {{item}}"}}
    fan = {
        "id": "fan",
        "type": "map",
        "config": {"items": "{{input.items}}", "node": child, "max_concurrency": max_concurrency},
    }
    return {"name": "fanout1000", "nodes": [fan], "edges": []}


async def run() -> dict[str, dict[str, Any]]:
    with llm_server() as url:
        floors: list[float] = []
        async with service(
            MODEL_SERVICE_URL=url, LLM_MAX_CONCURRENCY=IN_FLIGHT, WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=2
        ) as runtime:
            workflow_id = await create_workflow(runtime, map_workflow())
            await warm_pool_ready(runtime)
            sampler = RssSampler(os.getpid())
            sampler.start()
            items = [f"document {i}" for i in range(CALLS)]
            walls, node_walls = [], []
            for _ in range(RUNS + 1):
                await warm_pool_ready(runtime)
                floors.append(await fan_out(url, CALLS, IN_FLIGHT))
                started = time.perf_counter()
                job = await runtime.controller.execute_workflow(workflow_id, {"items": items}, owner="bench")
                events = [e async for e in runtime.bus.subscribe(job.id)]
                walls.append(time.perf_counter() - started)
                done = await runtime.store.get_job(job.id)
                assert done.status.value == "completed", done.error
                node = done.nodes["fan"]
                assert node.started_at is not None and node.finished_at is not None
                node_walls.append((node.finished_at - node.started_at).total_seconds())
                assert events[-1].type == "job_completed"
            sampler.stop()
            ray_worker = await bare_worker_rss(runtime.runtime.namespace)
    floor = median(floors[1:])
    wall = median(walls[1:])
    grown_mb = (sampler.service_peak - sampler.service_baseline) / 2**20
    beyond_mb = (sampler.peak_beyond_workers(ray_worker) - sampler.service_baseline) / 2**20
    return {
        "fanout1000": _fanout_figures(wall, floor, walls, node_walls),
        "memory-fanout1000": {
            "service_rss_baseline_mb": round(sampler.baseline / 2**20),
            "service_rss_peak_mb": round(sampler.peak / 2**20),
            "service_growth_mb": round(grown_mb, 1),
            "bare_ray_worker_mb": round(ray_worker / 2**20, 1),
            "mb_per_active_job_beyond_baseline": round(beyond_mb, 1),
            "growth_mb_by_process": sampler.growth_mb(),
            "note": (
                "one job active (dedicated mode); Ray's own processes left out, and for the job actor "
                "process the warm pool starts to replace the one the job took, a bare Ray worker's "
                "size (Ray's own cost of a process; the service's modules in it count)"
            ),
            "target": "reported; <= 100 MB per active job beyond Ray's own",
            "target_met": beyond_mb <= 100,
        },
    }


def _fanout_figures(wall: float, floor: float, walls: list[float], node_walls: list[float]) -> dict[str, Any]:
    return {
        "wall_s_median": round(wall, 3),
        "map_node_s_median": round(median(node_walls[1:]), 3),
        "first_job_wall_s": round(walls[0], 3),
        "floor": round(floor, 3),
        "floor_what": "plain asyncio, bare HTTP/1.1 client, same server, 200 in flight",
        "ratio_to_floor": round(wall / floor, 3),
        "target": f"wall time <= {TARGET_RATIO}x floor (execute -> job_completed, warm)",
        "target_met": wall <= TARGET_RATIO * floor,
    }
