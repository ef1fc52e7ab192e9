"""The `scale` curve of a job's stream replayed over SSE: a stored job's 100 / 10,000 events, published
through the event bus, read from the start from `GET /api/v1/jobs/{id}/events` (per-event cost)."""

from __future__ import annotations

import time
from typing import Any

from bench.harness import median
from bench.scale_curves import curve, flat
from bench.scale_store import OWNER, StoredWork, finished_job
from engine.records import EventType, JobEvent, utcnow

STREAM_EVENTS = (100, 10_000)
READS = 3
PUBLISH_BATCH = 1000


def job_events(job_id: str, workflow_id: str, count: int) -> list[JobEvent]:
    """`count` node_completed events of a job, numbered from 1, the last of them job_completed."""
    events = [
        JobEvent(
            sequence=n,
            type=EventType.NODE_COMPLETED,
            job_id=job_id,
            workflow_id=workflow_id,
            node_id=f"n{n}",
            data={"output": {"text": f"answer {n}"}, "attempt": 1},
        )
        for n in range(1, count)
    ]
    events.append(
        JobEvent(sequence=count, type=EventType.JOB_COMPLETED, job_id=job_id, workflow_id=workflow_id)
    )
    return events


async def _stored_stream(work: StoredWork, index: int, count: int) -> str:
    job = finished_job(index, work.workflow_ids[0], utcnow()).model_copy(update={"id": f"scale-sse-{count}"})
    await work.store.create_job(job)
    events = job_events(job.id, job.workflow_id, count)
    for start in range(0, count, PUBLISH_BATCH):
        await work.bus.publish_many(events[start : start + PUBLISH_BATCH])
    return job.id


async def _replay_ms(work: StoredWork, job_id: str) -> tuple[float, int]:
    """ms to read the job's whole stream from the start, and the events read."""
    read = 0
    started = time.perf_counter()
    async with work.http.get(f"/api/v1/jobs/{job_id}/events") as stream:
        stream.raise_for_status()
        async for line in stream.content:
            read += line.startswith(b"event:")
    return (time.perf_counter() - started) * 1000, read


async def sse_curve(work: StoredWork) -> dict[str, Any]:
    per_event: dict[int, float] = {}
    for index, count in enumerate(STREAM_EVENTS):
        job_id = await _stored_stream(work, index, count)
        samples = []
        for _ in range(READS):
            elapsed_ms, read = await _replay_ms(work, job_id)
            if read != count:
                raise RuntimeError(f"replaying {count} events of job {job_id} read {read}")
            samples.append(elapsed_ms)
        per_event[count] = median(samples) * 1000 / count
    figures = curve("us_per_event", per_event, 1)
    return {
        **figures,
        "note": f"a finished job of {OWNER}'s, its events published through the bus, read over SSE from "
        f"the start to its last event; the median of {READS} reads",
        "target": "per-event cost at 10,000 events <= 1.5x at 100",
        "target_met": flat(figures),
    }
