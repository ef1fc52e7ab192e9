"""children: a map of 100 child jobs of a 3-node workflow (start -> llm at 0 ms -> end) in reuse mode, against
the same 100 jobs started directly over the in-process API, in the same run (50 at a time both ways).

Each child ending resumes its suspended parent through admission, so the map pays one parent resume per
child on top of the children themselves; the ratio says what that costs.
"""

from __future__ import annotations

import time
from typing import Any

from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.fanout import llm_server
from bench.harness import create_workflow, service
from bench.jobs import llm_settings, submit_and_wait

CHILDREN = 100
IN_FLIGHT = 50
CHILD_JOB: dict[str, Any] = {
    "name": "child",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "ask", "type": "llm", "config": {"model": "bench", "prompt": "question {{input.n}}"}},
        {"id": "end", "type": "end", "config": {"output": {"answer": "{{ask.output.text}}"}}},
    ],
    "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}],
}


def parent_job(child_id: str, max_concurrency: int = IN_FLIGHT) -> dict[str, Any]:
    child = {"type": "workflow", "config": {"workflow_id": child_id, "input": {"n": "{{item}}"}}}
    mapped = {"items": "{{input.items}}", "max_concurrency": max_concurrency, "node": child}
    return {"name": "parent", "nodes": [{"id": "children", "type": "map", "config": mapped}]}


async def mapped_children(runtime: ServiceRuntime, parent_id: str) -> tuple[float, str]:
    """Seconds from execute to the parent's end, its map starting CHILDREN children; and the parent job."""
    started = time.perf_counter()
    job = await runtime.controller.execute_workflow(
        parent_id, {"items": list(range(CHILDREN))}, owner="bench"
    )
    async for _ in runtime.bus.subscribe(job.id):
        pass
    elapsed = time.perf_counter() - started
    done = await runtime.store.get_job(job.id)
    if done.status.value != "completed":
        raise RuntimeError(f"the parent job ended {done.status.value}: {done.error}")
    return elapsed, job.id


async def run() -> dict[str, Any]:
    with llm_server(latency_s=0.0) as url:
        async with service(
            **llm_settings(url),
            JOB_ACTOR_MODE="reuse",
            WARM_POOL_SIZE=2,
            MAX_ACTIVE_JOBS=IN_FLIGHT + 1,
            REUSE_MAX_JOBS=10_000,
        ) as runtime:
            child_id = await create_workflow(runtime, CHILD_JOB)
            parent_id = await create_workflow(runtime, parent_job(child_id))
            await submit_and_wait(runtime, child_id, 20, 10)
            direct = await submit_and_wait(runtime, child_id, CHILDREN, IN_FLIGHT)
            mapped_s, _ = await mapped_children(runtime, parent_id)
    mapped_per_s = CHILDREN / mapped_s
    ratio = mapped_per_s / direct["jobs_per_s"]
    return {
        "children": CHILDREN,
        "map_wall_s": round(mapped_s, 2),
        "map_jobs_per_s": round(mapped_per_s, 1),
        "floor": direct["jobs_per_s"],
        "floor_what": "the same 100 jobs started directly, in-process API, 50 in flight",
        "ratio_to_floor": round(ratio, 3),
        "target": ">= 0.8x the jobs started directly",
        "target_met": ratio >= 0.8,
    }
