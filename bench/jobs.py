"""Job throughput and start latency, through the in-process API: dedicated actors (with and without the
warm pool) and reuse mode, on jobs500's small job (start -> transform -> llm at 0 ms -> end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.fanout import llm_server
from bench.harness import SMALL_LLM_JOB, create_workflow, median, percentile, service


class Pinger:
    async def ping(self) -> int:
        return 1


async def plain_actor_floor(count: int = 100, in_flight: int = 50) -> float:
    """Actors/s of plain Ray: create an actor, call it, end it; `in_flight` at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(index: int) -> None:
        async with gate:
            handle = ray_api.start_actor(
                Pinger, name=None, namespace="bench-floor", detached=False, max_restarts=0
            )
            await ray_api.result(ray_api.call(handle, "ping", retry_on_restart=False))
            ray_api.kill(handle)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - started)


async def submit_and_wait(
    runtime: ServiceRuntime, workflow_id: str, count: int, in_flight: int
) -> dict[str, Any]:
    gate = asyncio.Semaphore(in_flight)
    to_running: list[float] = []
    to_done: list[float] = []

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            job = await runtime.controller.execute_workflow(workflow_id, {"n": index}, owner="bench")
            async for event in runtime.bus.subscribe(job.id):
                if event.type == "job_started":
                    to_running.append((time.perf_counter() - started) * 1000)
            to_done.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    return {
        "jobs": count,
        "jobs_per_s": round(count / elapsed, 2),
        "execute_to_running_p50_ms": round(median(to_running), 1),
        "submit_to_completed_p50_ms": round(median(to_done), 1),
        "submit_to_completed_p99_ms": round(percentile(to_done, 99), 1),
    }


async def warm_start_latency(runtime: ServiceRuntime, workflow_id: str, samples: int = 10) -> float:
    """execute -> job_started, one job at a time, each after the pool had time to refill."""
    latencies = []
    for _ in range(samples):
        await asyncio.sleep(1.5)
        figures = await submit_and_wait(runtime, workflow_id, 1, 1)
        latencies.append(figures["execute_to_running_p50_ms"])
    return median(latencies)


def llm_settings(url: str) -> dict[str, Any]:
    return {"MODEL_SERVICE_URL": url, "LLM_MAX_CONCURRENCY": 200}


async def run_dedicated() -> dict[str, Any]:
    with llm_server(latency_s=0.0) as url:
        async with service(**llm_settings(url), WARM_POOL_SIZE=4, MAX_ACTIVE_JOBS=50) as runtime:
            floor = await plain_actor_floor()
            workflow_id = await create_workflow(runtime, SMALL_LLM_JOB)
            await asyncio.sleep(3)
            warm = await warm_start_latency(runtime, workflow_id)
            burst = await submit_and_wait(runtime, workflow_id, 100, 50)
        async with service(**llm_settings(url), WARM_POOL_SIZE=0, MAX_ACTIVE_JOBS=50) as runtime:
            workflow_id = await create_workflow(runtime, SMALL_LLM_JOB)
            cold = await warm_start_latency(runtime, workflow_id, samples=5)
    ratio = burst["jobs_per_s"] / floor
    return {
        **burst,
        "execute_to_running_warm_pool_p50_ms": round(warm, 1),
        "execute_to_running_no_pool_p50_ms": round(cold, 1),
        "floor": round(floor, 2),
        "floor_what": "plain Ray actors/s: create, call, kill; 100 with 50 at a time",
        "ratio_to_floor": round(ratio, 3),
        "target": "jobs/s >= 0.8x floor; execute-to-running p50 <= 50 ms (pool not empty)",
        "target_met": ratio >= 0.8 and warm <= 50,
    }


async def run_reuse(count: int = 500) -> dict[str, Any]:
    """jobs500 without REST: the in-process API, 50 in flight, on reuse mode's 2 runners."""
    with llm_server(latency_s=0.0) as url:
        async with service(
            **llm_settings(url),
            JOB_ACTOR_MODE="reuse",
            WARM_POOL_SIZE=2,
            MAX_ACTIVE_JOBS=50,
            REUSE_MAX_JOBS=1000,
        ) as runtime:
            workflow_id = await create_workflow(runtime, SMALL_LLM_JOB)
            await asyncio.sleep(5)
            figures = await submit_and_wait(runtime, workflow_id, count, 50)
    return {
        **figures,
        "target": ">= 80 jobs/s (in-process API, 50 in flight; latency targets: see jobs500)",
        "target_met": figures["jobs_per_s"] >= 80,
    }
