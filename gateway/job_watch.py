"""Follows each job this gateway started, to its end, to feed the job metrics.

A job is watched by the gateway that took its execute request, once: a repeated request with the same
Idempotency-Key returns a job that is already watched (or already running or finished) and is not
counted again. Jobs that outlive this gateway's process are not counted by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from engine.errors import NotFoundError
from engine.records import EventType, JobRecord, JobStatus
from gateway.metrics import ServiceMetrics
from gateway.streams import follow_job
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)


class JobWatcher:
    def __init__(self, store: Store, bus: EventBus, metrics: ServiceMetrics, idle_s: float) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._idle_s = idle_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, job: JobRecord) -> None:
        """Follow a job just submitted; one that is no longer pending was submitted before."""
        if job.id in self._tasks or job.status is not JobStatus.PENDING:
            return
        task = asyncio.get_running_loop().create_task(self._follow(job), name=f"watch-job:{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def _follow(self, job: JobRecord) -> None:
        try:
            async for event in follow_job(self._bus, self._store, job.id, None, self._idle_s):
                if event is not None and event.type == EventType.JOB_STARTED:
                    self._metrics.job_started(job.workflow_id)
            final = await self._store.get_job(job.id)
            try:
                workflow = await self._store.get_workflow(final.workflow_id, final.workflow_version)
            except NotFoundError:
                workflow = None
            self._metrics.job_finished(final, workflow.definition if workflow else None)
        except Exception:
            logger.exception("stopped following job %s for metrics", job.id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
