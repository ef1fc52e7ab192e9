"""code: the documented doubling code node, one job at a time, in dedicated and reuse modes; how far its
span (node_started to node_completed, the job's own event times) is above the sandbox's own run time.
Then a map of MAP_ITEMS such code items, against its floor: the same sandboxed runs launched from the bench
process, as many at once as Ray has CPUs (each item's task takes one)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.ray_runtime import ray_api
from bench.harness import create_workflow, median, service
from nodes.code import CodeConfig, CodeNode, sandbox_limits
from nodes.sandbox import run_python
from nodes.settings import NodeSettings

TARGET_MS = 60.0
JOBS = 12
DOUBLING_CODE = (
    "def process(input_data):\n    result = input_data * 2\n    print(f'doubled {input_data}')\n"
    '    return {"output": result}\n'
)
CODE_JOB: dict[str, Any] = {
    "name": "code-bench",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "double",
            "type": "code",
            "config": {"code": DOUBLING_CODE, "input_mapping": {"input_data": "{{input.n}}"}},
        },
    ],
    "edges": [{"source": "start", "target": "double"}],
}
MODES = ("dedicated", "reuse")
MAP_ITEMS = 200
MAP_JOB: dict[str, Any] = {
    "name": "code-map-bench",
    "nodes": [
        {
            "id": "fan",
            "type": "map",
            "config": {
                "items": "{{input.items}}",
                "node": {
                    "type": "code",
                    "config": {"code": DOUBLING_CODE, "input_mapping": {"input_data": "{{item}}"}},
                },
                "max_concurrency": MAP_ITEMS,
            },
        }
    ],
    "edges": [],
}
MAP_TARGET_RATIO = 1.5
"""The map's span over its floor: the items' Ray tasks keep every core as busy as plain parallel runs."""


async def sandboxed_run(n: int) -> None:
    """The doubling code's sandboxed run, launched from this process as the node launches it."""
    settings = NodeSettings()
    await run_python(
        DOUBLING_CODE,
        {"input_data": n},
        sandbox_limits(CodeConfig(code=DOUBLING_CODE), settings),
        allow_unsandboxed=settings.sandbox_allow_unsandboxed,
        cgroup_parent=settings.sandbox_cgroup_parent,
    )


async def sandbox_floor(runs: int = JOBS) -> float:
    """Median ms of the sandboxed run alone."""
    samples = []
    for n in range(runs):
        started = time.perf_counter()
        await sandboxed_run(n)
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


async def parallel_floor_ms(at_once: int) -> float:
    """Ms for MAP_ITEMS sandboxed runs, `at_once` of them at a time."""
    slots = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        async with slots:
            await sandboxed_run(n)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(MAP_ITEMS)))
    return (time.perf_counter() - started) * 1000


async def map_span_ms() -> tuple[float, float]:
    """The span in ms of a map of MAP_ITEMS code items (after one run to warm up), and the cores Ray has."""
    async with service(WARM_POOL_SIZE=1) as runtime:
        workflow_id = await create_workflow(runtime, MAP_JOB)
        spans = []
        for _ in range(2):
            job = await runtime.controller.execute_workflow(
                workflow_id, {"items": list(range(MAP_ITEMS))}, owner="bench"
            )
            times = {
                event.type: event.time
                async for event in runtime.bus.subscribe(job.id)
                if event.node_id == "fan" and event.type in ("node_started", "node_completed")
            }
            spans.append((times["node_completed"] - times["node_started"]).total_seconds() * 1000)
        return spans[-1], ray_api.cluster_resources().get("CPU", 1.0)


async def node_spans(mode: str) -> list[float]:
    """The code node's span in ms, for JOBS jobs run one after another."""
    async with service(JOB_ACTOR_MODE=mode, WARM_POOL_SIZE=2) as runtime:
        workflow_id = await create_workflow(runtime, CODE_JOB)
        spans = []
        for n in range(JOBS):
            job = await runtime.controller.execute_workflow(workflow_id, {"n": n}, owner="bench")
            times = {
                event.type: event.time
                async for event in runtime.bus.subscribe(job.id)
                if event.node_id == "double" and event.type in ("node_started", "node_completed")
            }
            spans.append((times["node_completed"] - times["node_started"]).total_seconds() * 1000)
            await asyncio.sleep(0.1)
    return spans


async def run() -> dict[str, Any]:
    assert CodeNode.type_name == CODE_JOB["nodes"][1]["type"]
    floor = await sandbox_floor()
    figures: dict[str, Any] = {"sandbox_ms_median": round(floor, 1)}
    met = True
    for mode in MODES:
        spans = await node_spans(mode)
        over = median(spans) - floor
        figures[f"{mode}_span_ms_median"] = round(median(spans), 1)
        figures[f"{mode}_over_sandbox_ms"] = round(over, 1)
        figures[f"{mode}_first_span_ms"] = round(spans[0], 1)
        met = met and over <= TARGET_MS
    span, cores = await map_span_ms()
    map_floor = await parallel_floor_ms(int(cores))
    figures.update(
        map_items=MAP_ITEMS,
        map_span_ms=round(span, 1),
        map_floor_ms=round(map_floor, 1),
        map_ratio_to_floor=round(span / map_floor, 2),
    )
    met = met and span / map_floor <= MAP_TARGET_RATIO
    figures["floor_what"] = (
        "median ms of the sandboxed run alone, launched from the bench process; for the map, its items' "
        f"sandboxed runs from the bench process, {int(cores)} (Ray's CPUs) at a time"
    )
    figures["target"] = (
        f"node span <= sandbox + {TARGET_MS:.0f} ms (p50), both modes; "
        f"a {MAP_ITEMS}-item map <= {MAP_TARGET_RATIO}x its parallel floor"
    )
    figures["target_met"] = met
    return figures
