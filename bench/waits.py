"""waits: 1,000 jobs paused at an approval at once, then approved; and 1,000 timers of 1 s.

While the jobs wait it counts the job actors alive (beyond the warm pool) and the service's memory beyond
what it held before they were started (after 1,000 jobs without waits had run, so what any 1,000 jobs
leave in the processes' allocators is not counted as waiting); then it approves 100 jobs one at a time
and the other 900 with 50 signals in flight (through the in-process API), and reads from each job's
events how long its signal took to start the node after the approval. Dedicated mode approves 20 jobs
one at a time, each once the warm pool is full again, since each resume there takes an actor. The timers
part starts 1,000 jobs whose wait node sleeps 1 s: how late the job manager's timers woke their jobs,
and, from each node's output (the time its runner saw the deadline pass), how late the node woke.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.harness import (
    RssSampler,
    _beyond_ray,
    _by_kind,
    create_workflow,
    median,
    percentile,
    service,
    warm_pool_ready,
)
from engine.records import EventType, JobRecord

APPROVAL_JOB: dict[str, Any] = {
    "name": "waits",
    "nodes": [
        {"id": "review", "type": "approval", "config": {"message": "ship {{input.n}}?"}},
        {"id": "after", "type": "transform", "config": {"template": "shipped {{input.n}}"}},
    ],
    "edges": [{"source": "review", "target": "after"}],
}
PLAIN_JOB: dict[str, Any] = {
    "name": "no waits",
    "nodes": [{"id": "after", "type": "transform", "config": {"template": "shipped {{input.n}}"}}],
    "edges": [],
}
"""Run 1,000 times before the waiting jobs start, so the memory those then add is what waiting holds, not
what any 1,000 jobs leave in the processes' allocators (Python does not give freed memory back)."""
TIMER_JOB: dict[str, Any] = {
    "name": "timers",
    "nodes": [{"id": "nap", "type": "wait", "config": {"delay_s": 1}}],
    "edges": [],
}
IN_FLIGHT = 50
SUSPEND_LIMIT_S = 300.0


async def start_jobs(runtime: ServiceRuntime, workflow_id: str, count: int) -> list[JobRecord]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> JobRecord:
        async with gate:
            return await runtime.controller.execute_workflow(workflow_id, {"n": n}, owner="bench")

    return await asyncio.gather(*(one(n) for n in range(count)))


async def all_suspended(runtime: ServiceRuntime, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + SUSPEND_LIMIT_S
    while True:
        stats = await runtime.controller.stats()
        if stats["suspended"] >= count and stats["active"] == 0 and stats["pending"] == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"only {stats['suspended']} of {count} jobs suspended: {stats}")
        await asyncio.sleep(0.2)


def job_actors(runtime: ServiceRuntime) -> int:
    names = ray_api.named_actors(runtime.runtime.namespace)
    return sum(1 for name in names if name.startswith(("job:", "job-runner:")))


async def approve(runtime: ServiceRuntime, job: JobRecord) -> float:
    """Approve the job; ms from its signal stored to its next node started."""
    signal, _ = await runtime.controller.signal_job(job, "review", {"approved": True}, "bench")
    started = None
    async for event in runtime.bus.subscribe(job.id):
        if event.type == EventType.NODE_STARTED and event.node_id == "after":
            started = event.time
    assert started is not None, f"job {job.id} never started its next node"
    return (started - signal.created_at).total_seconds() * 1000


async def approve_all(runtime: ServiceRuntime, jobs: list[JobRecord]) -> tuple[list[float], float]:
    """Approve every job, IN_FLIGHT at a time: the latencies, and approvals per second."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(job: JobRecord) -> float:
        async with gate:
            return await approve(runtime, job)

    began = time.perf_counter()
    latencies = list(await asyncio.gather(*(one(job) for job in jobs)))
    return latencies, len(jobs) / (time.perf_counter() - began)


async def approve_one_by_one(
    runtime: ServiceRuntime, jobs: list[JobRecord], *, refill_pool: bool = False
) -> list[float]:
    """Approve each job after the last one's next node started (and, dedicated, the pool refilled)."""
    latencies = []
    for job in jobs:
        if refill_pool:
            await warm_pool_ready(runtime)
        latencies.append(await approve(runtime, job))
    return latencies


def service_rss(sampler: RssSampler) -> dict[str, int]:
    return _by_kind(sampler.by_pid())


def figures(latencies: list[float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(median(latencies), 1),
        f"{prefix}_p99_ms": round(percentile(latencies, 99), 1),
    }


async def approvals_reuse(count: int = 1000, one_by_one: int = 100) -> dict[str, Any]:
    async with service(
        JOB_ACTOR_MODE="reuse", WARM_POOL_SIZE=2, MAX_ACTIVE_JOBS=50, REUSE_MAX_JOBS=10_000
    ) as runtime:
        workflow_id = await create_workflow(runtime, APPROVAL_JOB)
        warmup = await start_jobs(runtime, workflow_id, 20)
        await all_suspended(runtime, 20)
        await approve_all(runtime, warmup)
        plain = await start_jobs(runtime, await create_workflow(runtime, PLAIN_JOB), count)
        for job in plain:
            async for _ in runtime.bus.subscribe(job.id):
                pass
        await asyncio.sleep(2)
        sampler = RssSampler(os.getpid())
        before = service_rss(sampler)
        jobs = await start_jobs(runtime, workflow_id, count)
        await all_suspended(runtime, count)
        await asyncio.sleep(1)
        after = service_rss(sampler)
        actors_waiting = job_actors(runtime)
        alone = await approve_one_by_one(runtime, jobs[:one_by_one])
        loaded, per_s = await approve_all(runtime, jobs[one_by_one:])
    grown = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    waiting_bytes = _beyond_ray(grown)
    return {
        "jobs": count,
        "job_actors_while_waiting": actors_waiting,
        "warm_pool": 2,
        "service_mb_per_1000_waiting": round(waiting_bytes / 2**20 * 1000 / count, 1),
        "growth_mb_by_process": {k: round(v / 2**20, 1) for k, v in grown.items() if abs(v) >= 2**20},
        **figures(alone, "signal_to_next_node"),
        **figures(loaded, f"at_{IN_FLIGHT}_in_flight_signal_to_next_node"),
        "approvals_per_s": round(per_s, 1),
    }


async def approvals_dedicated(count: int = 20) -> dict[str, Any]:
    async with service(JOB_ACTOR_MODE="dedicated", WARM_POOL_SIZE=2, MAX_ACTIVE_JOBS=50) as runtime:
        workflow_id = await create_workflow(runtime, APPROVAL_JOB)
        jobs = await start_jobs(runtime, workflow_id, count)
        await all_suspended(runtime, count)
        await warm_pool_ready(runtime)
        actors_waiting = job_actors(runtime)
        alone = await approve_one_by_one(runtime, jobs, refill_pool=True)
    return {
        "jobs": count,
        "job_actors_while_waiting": actors_waiting,
        "warm_pool": 2,
        **figures(alone, "signal_to_next_node"),
    }


async def timers(count: int = 1000) -> dict[str, Any]:
    async with service(
        JOB_ACTOR_MODE="reuse", WARM_POOL_SIZE=2, MAX_ACTIVE_JOBS=50, REUSE_MAX_JOBS=10_000
    ) as runtime:
        workflow_id = await create_workflow(runtime, TIMER_JOB)
        jobs = await start_jobs(runtime, workflow_id, count)
        woke_late: list[float] = []
        for job in jobs:
            async for _ in runtime.bus.subscribe(job.id):
                pass
            node = (await runtime.store.get_job(job.id)).nodes["nap"]
            assert node.wait is not None and node.wait.deadline is not None
            woke_late.append(
                (datetime.fromisoformat(node.output) - node.wait.deadline).total_seconds() * 1000
            )
        stats = await runtime.controller.stats()
    return {
        "timers": count,
        "fired_late_p50_ms": round(stats["timer_late_p50_ms"], 1),
        "fired_late_p99_ms": round(stats["timer_late_p99_ms"], 1),
        **figures(woke_late, "node_woke_late"),
    }


async def run() -> dict[str, dict[str, Any]]:
    reuse = await approvals_reuse()
    dedicated = await approvals_dedicated()
    timed = await timers()
    return {
        "waits-reuse": {
            **reuse,
            "target": "no job actor beyond the pool; < 20 MB per 1,000 waiting; p50 < 50 ms",
            "target_met": reuse["job_actors_while_waiting"] <= reuse["warm_pool"]
            and reuse["service_mb_per_1000_waiting"] < 20
            and reuse["signal_to_next_node_p50_ms"] < 50,
        },
        "waits-dedicated": {
            **dedicated,
            "target": "no job actor beyond the pool; p50 < 1.5 s",
            "target_met": dedicated["job_actors_while_waiting"] <= dedicated["warm_pool"]
            and dedicated["signal_to_next_node_p50_ms"] < 1500,
        },
        "waits-timers": {
            **timed,
            "target": "1,000 timers of 1 s fire within 250 ms of their time (p99)",
            "target_met": timed["fired_late_p99_ms"] <= 250,
        },
    }
