"""schedules: 100 schedules due in the same minute, on the system's clock; how late each slot's job came.

The schedules (every minute, overlap `allow`) are created through the store and the keeper told of each,
as a gateway does, with slots counting from just before the next minute boundary at least LEAD_S away; so
the workload waits for one real minute boundary (at most about 80 s) and measures, from the jobs
themselves, the time from the slot to each job created (the keeper fired it through the job manager) and
to each job started (admission gave it a runner), p50 and p99.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from actors.ray_runtime.bootstrap import ServiceRuntime
from bench.harness import create_workflow, median, percentile, service
from engine.records import JobRecord, utcnow
from engine.schedules import Overlap, ScheduleRecord

SCHEDULES = 100
LEAD_S = 20.0
"""The slot is the first minute boundary at least this far away: time to create the schedules."""
COLLECT_LIMIT_S = 60.0
JOB: dict[str, Any] = {
    "name": "scheduled",
    "nodes": [{"id": "report", "type": "transform", "config": {"template": {"ok": True}}}],
    "edges": [],
}


def slot_after(now: datetime) -> datetime:
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return boundary if (boundary - now).total_seconds() >= LEAD_S else boundary + timedelta(minutes=1)


async def collect(runtime: ServiceRuntime, schedule_ids: list[str], slot: datetime) -> list[JobRecord]:
    """The slot's job of every schedule, once each has started."""
    deadline = asyncio.get_running_loop().time() + (slot - utcnow()).total_seconds() + COLLECT_LIMIT_S
    while True:
        jobs = []
        for schedule_id in schedule_ids:
            jobs.extend((await runtime.store.list_jobs(trigger_id=schedule_id, limit=1)).items)
        if len(jobs) == len(schedule_ids) and all(job.started_at is not None for job in jobs):
            return jobs
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"only {len(jobs)} of {len(schedule_ids)} schedules fired at {slot}")
        await asyncio.sleep(0.5)


def late_ms(times: list[datetime], slot: datetime) -> list[float]:
    return [(t - slot).total_seconds() * 1000 for t in times]


async def run() -> dict[str, Any]:
    async with service(
        JOB_ACTOR_MODE="reuse", WARM_POOL_SIZE=2, MAX_ACTIVE_JOBS=50, REUSE_MAX_JOBS=10_000
    ) as runtime:
        workflow_id = await create_workflow(runtime, JOB)
        slot = slot_after(datetime.now(UTC))
        schedule_ids = []
        for _ in range(SCHEDULES):
            schedule = ScheduleRecord(
                owner="bench",
                workflow_id=workflow_id,
                cron="* * * * *",
                overlap=Overlap.ALLOW,
                since=slot - timedelta(seconds=1),
            )
            await runtime.store.create_schedule(schedule)
            await runtime.schedules.changed(schedule.id)
            schedule_ids.append(schedule.id)
        jobs = await collect(runtime, schedule_ids, slot)
        for schedule_id in schedule_ids:
            await runtime.store.delete_schedule(schedule_id)
            await runtime.schedules.changed(schedule_id)
    created = late_ms([job.created_at for job in jobs], slot)
    started = late_ms([job.started_at for job in jobs if job.started_at is not None], slot)
    p99 = percentile(created, 99)
    return {
        "schedules": SCHEDULES,
        "slot_to_job_created_p50_ms": round(median(created), 1),
        "slot_to_job_created_p99_ms": round(p99, 1),
        "slot_to_job_started_p50_ms": round(median(started), 1),
        "slot_to_job_started_p99_ms": round(percentile(started, 99), 1),
        "target": "100 schedules due in the same minute fire within 1 s (p99)",
        "target_met": p99 <= 1000,
    }
