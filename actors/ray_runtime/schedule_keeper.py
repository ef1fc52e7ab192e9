"""The schedule keeper: one detached async actor (`schedule-keeper`) that owns the timing of every schedule.

Every gateway finds the same actor by name, so several gateways behind a load balancer fire each slot
once; gateways only tell it that a schedule was created, changed or deleted (`changed`). The store stays
the source of truth: the keeper keeps each enabled schedule's next fire time in a WakeQueue, reads the
schedule again when it is due, works out the due slots from the stored cursor (engine/schedules.py,
`catchup` included: after downtime, a restarted keeper applies it at once) and fires each through the job
manager, as `WorkflowController.create_job` does for an API call (admission applies). Each slot's job
has the idempotency key `schedule:<id>:<slot>`, so a slot fired twice (a keeper that died between the job
and the record of its slot) still starts one job. The job runs as the schedule's owner with the roles
the owner had when the schedule was created.

Overlap is decided from the schedule's last job: `skip` records a slot whose previous job has not ended as
skipped (no job), `cancel_previous` cancels that job first, `allow` starts the slot's job anyway.

With SCHEDULE_CLOCK=manual (tests) nothing fires by itself: `tick(now)` fires what is due at `now`, through
the same `_fire` the WakeQueue calls with the real time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.controller import WorkflowController
from actors.ray_runtime.runtime_config import RuntimeConfig
from actors.ray_runtime.wake_queue import WakeQueue
from engine.errors import ConflictError, NotFoundError, WorkflowServiceError
from engine.records import TriggerRef, utcnow
from engine.schedules import (
    DueSlots,
    Overlap,
    ScheduleEvent,
    ScheduleRecord,
    due_slots,
    idempotency_key,
    next_fire,
)
from storage.protocols import Store

logger = logging.getLogger(__name__)

KEEPER_NAME = "schedule-keeper"
"""The keeper actor's name in the service's namespace."""
RETRY_S = 5.0
"""How soon a schedule whose fire failed for a passing reason (store, job manager down) tries again."""
PAGE = 500


def start_keeper(runtime: RuntimeConfig) -> ray_api.ScheduleKeeperHandle:
    """Find or start the cluster's schedule keeper (on the head node, restarted by Ray if it dies)."""
    return ray_api.ScheduleKeeperHandle(
        ray_api.start_actor(
            ScheduleKeeper,
            runtime,
            name=KEEPER_NAME,
            namespace=runtime.namespace,
            get_if_exists=True,
            on_head=True,
        )
    )


class KeeperOnDemand:
    """The cluster's schedule keeper as a gateway reaches it, started on first need: a service that has no
    schedule runs no keeper actor (and each service runtime a test builds starts none). The bootstrap and
    the health check start it once some schedule is enabled, so a service (or a Ray) restarted with
    schedules loads them again without waiting for a schedule request."""

    def __init__(self, runtime: RuntimeConfig, store: Store) -> None:
        self._runtime = runtime
        self._store = store
        self._handle: ray_api.ScheduleKeeperHandle | None = None
        self._starting = asyncio.Lock()

    async def _keeper(self) -> ray_api.ScheduleKeeperHandle:
        async with self._starting:
            if self._handle is None:
                handle = start_keeper(self._runtime)
                await handle.start()
                self._handle = handle
        return self._handle

    async def start_if_needed(self) -> dict[str, Any] | None:
        """Start (or, after a Ray restart, reload) the keeper if it was started or a schedule is enabled;
        its stats, or None when no keeper is needed."""
        if self._handle is None and (await self._store.list_schedules(None, 0, 1, enabled=True)).total == 0:
            return None
        keeper = await self._keeper()
        return await keeper.start()

    async def changed(self, schedule_id: str) -> None:
        await (await self._keeper()).changed(schedule_id)

    async def tick(self, now: datetime) -> list[str]:
        return await (await self._keeper()).tick(now)

    async def stats(self) -> dict[str, Any]:
        return await (await self._keeper()).stats()


class ScheduleKeeper:
    def __init__(self, runtime: RuntimeConfig) -> None:
        runtime.configure_process_logging()
        self._runtime = runtime
        self._manual = runtime.settings.jobs.schedule_clock == "manual"
        self._store: Store | None = None
        self._controller: WorkflowController | None = None
        self._starting = asyncio.Lock()
        self._started = False
        self._next: dict[str, datetime] = {}
        """Enabled schedules -> when they are next due."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._queue = WakeQueue(self._wake)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fired = 0

    # ------------------------------------------------------------ start-up

    async def start(self) -> dict[str, Any]:
        """Idempotent: open the store, reach the job manager, load the enabled schedules and plan each
        (a slot that passed while nothing ran is due at once, and its catchup applies)."""
        async with self._starting:
            if not self._started:
                self._store = self._store or await self._runtime.open_store()
                self._controller = await WorkflowController.connect(self._runtime, self._store)
                offset = 0
                while True:
                    page = await self._store.list_schedules(None, offset, PAGE, enabled=True)
                    for schedule in page.items:
                        self._plan(schedule)
                    offset += PAGE
                    if offset >= page.total:
                        break
                self._started = True
                logger.info("schedule keeper started with %d enabled schedules", len(self._next))
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {
            "schedules": len(self._next),
            "next_due": min(self._next.values(), default=None),
            "fired": self.fired,
            "clock": "manual" if self._manual else "system",
            "pid": os.getpid(),
        }

    def _require(self) -> tuple[Store, WorkflowController]:
        assert self._store is not None and self._controller is not None, "start() first"
        return self._store, self._controller

    # ------------------------------------------------------------ what gateways tell it

    async def changed(self, schedule_id: str) -> None:
        """A schedule was created, changed or deleted: plan it again from the store."""
        await self.start()
        store, _ = self._require()
        try:
            schedule = await store.get_schedule(schedule_id)
        except NotFoundError:
            self._forget(schedule_id)
            return
        self._plan(schedule)

    def _plan(self, schedule: ScheduleRecord) -> None:
        if not schedule.enabled:
            self._forget(schedule.id)
            return
        due = next_fire(schedule.cron, schedule.timezone, schedule.cursor)
        self._plan_at(schedule.id, due)

    def _plan_at(self, schedule_id: str, due: datetime) -> None:
        self._next[schedule_id] = due
        if not self._manual:
            self._queue.schedule(schedule_id, due)

    def _forget(self, schedule_id: str) -> None:
        self._next.pop(schedule_id, None)
        self._queue.discard(schedule_id)

    # ------------------------------------------------------------ firing

    def _wake(self, schedule_id: str) -> None:
        self._spawn(self._fire(schedule_id, utcnow()))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tick(self, now: datetime) -> list[str]:
        """Manual clock only: fire every schedule due at `now`; the ids of the jobs started."""
        await self.start()
        if not self._manual:
            raise ConflictError("the schedule keeper keeps the system's time (SCHEDULE_CLOCK=system)")
        due = [schedule_id for schedule_id, when in self._next.items() if when <= now]
        started = await asyncio.gather(*(self._fire(schedule_id, now) for schedule_id in due))
        return [job_id for job_ids in started for job_id in job_ids]

    async def _fire(self, schedule_id: str, now: datetime) -> list[str]:
        """Fire the schedule's slots due at `now` (one at a time per schedule) and plan its next; the ids
        of the jobs started."""
        lock = self._locks.setdefault(schedule_id, asyncio.Lock())
        async with lock:
            store, _ = self._require()
            try:
                schedule = await store.get_schedule(schedule_id)
            except NotFoundError:
                self._forget(schedule_id)
                self._locks.pop(schedule_id, None)  # deleted: its id never comes back
                return []
            if not schedule.enabled:
                self._forget(schedule_id)
                return []
            started: list[str] = []
            try:
                schedule = await self._fire_due(schedule, now, started)
            except Exception:
                logger.exception("schedule %s: firing failed; trying again in %.0f s", schedule_id, RETRY_S)
                self._plan_at(schedule_id, now + timedelta(seconds=RETRY_S))
                return started
            self._plan(schedule)
            return started

    async def _fire_due(self, schedule: ScheduleRecord, now: datetime, started: list[str]) -> ScheduleRecord:
        store, _ = self._require()
        due = due_slots(schedule.cron, schedule.timezone, schedule.cursor, now, schedule.catchup)
        events = self._dropped(schedule, due)
        if not due.fire:
            if due.latest_dropped is not None:
                schedule = await store.record_schedule_slot(schedule.id, due.latest_dropped, None, events)
            return schedule
        for slot in due.fire:
            schedule = await self._fire_slot(schedule, slot, events, started)
            events = []
        return schedule

    @staticmethod
    def _dropped(schedule: ScheduleRecord, due: DueSlots) -> list[ScheduleEvent]:
        if not due.dropped:
            return []
        logger.warning(
            "schedule %s: catchup %s dropped %d missed slot(s), the latest %s",
            schedule.id,
            schedule.catchup.value,
            due.dropped,
            due.latest_dropped.isoformat() if due.latest_dropped else "-",
        )
        return [
            ScheduleEvent(
                outcome="dropped",
                slot=due.latest_dropped,
                dropped=due.dropped,
                message=f"catchup {schedule.catchup.value} dropped {due.dropped} missed slot(s)",
            )
        ]

    async def _fire_slot(
        self, schedule: ScheduleRecord, slot: datetime, events: list[ScheduleEvent], started: list[str]
    ) -> ScheduleRecord:
        store, controller = self._require()
        previous = await self._unfinished(schedule.last_job_id)
        if previous is not None and schedule.overlap is Overlap.SKIP:
            skipped = ScheduleEvent(
                outcome="skipped", slot=slot, job_id=previous, message=f"job {previous} has not ended"
            )
            return await store.record_schedule_slot(schedule.id, slot, None, [*events, skipped])
        if previous is not None and schedule.overlap is Overlap.CANCEL_PREVIOUS:
            try:
                await controller.cancel_job(previous)
            except ConflictError:
                logger.info("schedule %s: job %s ended before it could be cancelled", schedule.id, previous)
        try:
            job = await controller.create_job(
                schedule.workflow_id,
                schedule.input,
                schedule.owner,
                idempotency_key(schedule.id, slot),
                schedule.owner_roles,
                trigger=TriggerRef(kind="schedule", id=schedule.id),
            )
        except WorkflowServiceError as exc:
            if exc.retryable:
                raise
            failed = ScheduleEvent(outcome="failed", slot=slot, message=exc.message)
            return await store.record_schedule_slot(schedule.id, slot, None, [*events, failed])
        self.fired += 1
        started.append(job.id)
        begun = ScheduleEvent(outcome="started", slot=slot, job_id=job.id)
        return await store.record_schedule_slot(schedule.id, slot, job.id, [*events, begun])

    async def _unfinished(self, job_id: str | None) -> str | None:
        """`job_id` when that job has not ended yet."""
        if job_id is None:
            return None
        store, _ = self._require()
        try:
            job = await store.get_job(job_id)
        except NotFoundError:
            return None
        return None if job.status.is_terminal else job.id
