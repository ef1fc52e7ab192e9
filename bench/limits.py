"""limits: what one job manager actor and one Redis carry, for docs/deployment.md's "past one cluster".

- job manager: JOBS small jobs (start -> end) at IN_FLIGHT in flight, reuse mode, the in-process API; the
  manager's own CPU per job (its process, sampled), so one manager saturates its core at 1 / that jobs/s
  whatever else the cluster adds; and what this whole 2-core machine reached meanwhile;
- Redis: PUBLISHERS job actors' worth of commits, each the events of one commit (COMMIT_EVENTS, pipelined as
  a job actor publishes them) to a job stream and its workflow stream, for SECONDS; events/s reached and the
  Redis server's CPU per event, so one Redis core saturates at 1 / that events/s. The publishers are Python
  in this process and saturate first on 2 cores, so the ceiling is an extrapolation from Redis's CPU.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from bench.harness import CpuMeter, create_workflow, service
from bench.jobs import submit_and_wait
from engine.records import JobEvent
from storage.protocols import EventBus

JOBS, IN_FLIGHT = 1000, 100
PUBLISHERS, COMMIT_EVENTS, SECONDS = 50, 5, 10.0
MANAGER = "ray::JobManager"
TINY_JOB: dict[str, Any] = {
    "name": "limits",
    "nodes": [{"id": "start", "type": "start"}, {"id": "end", "type": "end"}],
    "edges": [{"source": "start", "target": "end"}],
}


async def publish_commits(bus: EventBus, deadline: float) -> int:
    """One job's commits, as fast as the bus takes them, until `deadline`; how many events."""
    job_id, sequence = uuid.uuid4().hex, 0
    while time.monotonic() < deadline:
        events = [
            JobEvent(sequence=sequence + n + 1, type="node_completed", job_id=job_id, workflow_id="limits")
            for n in range(COMMIT_EVENTS)
        ]
        await bus.publish_many(events)
        sequence += COMMIT_EVENTS
    return sequence


async def run() -> dict[str, Any]:
    async with service(JOB_ACTOR_MODE="reuse", WARM_POOL_SIZE=2, MAX_ACTIVE_JOBS=IN_FLIGHT) as runtime:
        workflow_id = await create_workflow(runtime, TINY_JOB)
        await submit_and_wait(runtime, workflow_id, 100, IN_FLIGHT)
        meter = CpuMeter(os.getpid())
        meter.start()
        jobs = await submit_and_wait(runtime, workflow_id, JOBS, IN_FLIGHT)
        meter.stop()
        manager_ms = meter.by_kind().get(MANAGER, 0.0) * 1000 / JOBS
        meter = CpuMeter(os.getpid())
        meter.start()
        started = time.monotonic()
        counts = await asyncio.gather(
            *(publish_commits(runtime.bus, started + SECONDS) for _ in range(PUBLISHERS))
        )
        elapsed = time.monotonic() - started
        meter.stop()
    events = sum(counts)
    redis_us = meter.by_kind().get("redis", 0.0) * 1e6 / events
    return {
        "manager_cpu_ms_per_job": round(manager_ms, 3),
        "manager_jobs_per_s_ceiling": round(1000 / manager_ms) if manager_ms else None,
        "machine_jobs_per_s": jobs["jobs_per_s"],
        "redis_events_per_s_reached": round(events / elapsed),
        "redis_cpu_us_per_event": round(redis_us, 2),
        "redis_events_per_s_ceiling": round(1e6 / redis_us) if redis_us else None,
        "target": "measured only (docs/deployment.md, past one cluster)",
        "target_met": True,
    }
