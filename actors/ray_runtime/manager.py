"""The job manager: admission, the job actors (a warm pool or shared actors), recovery, cancellation.

It runs as one detached async actor (`job-manager`), so admission is counted once for the whole
cluster whichever gateway took the request. Jobs beyond `max_active_jobs` wait as `pending`, first
in first out. How jobs get actors is the mode's (actor_modes.py): dedicated mode starts an actor per job,
from a warm pool of ready ones; reuse mode spreads jobs over a fixed set of warm shared actors, never
starting one per job. The
store stays the source of truth: a manager that restarts rebuilds its queue from the jobs stored as
pending or running and adopts the job actors still alive.

A job whose run ends suspended (engine/waits.py) holds no actor and no admission slot: the manager keeps
only its earliest deadline (wake_queue.py) and resumes it through admission, like a queued job, when that
is due or when a signal for it is stored (`signal`). A restarted manager finds the suspended jobs in the
store: their deadlines from their checkpoints, and resumes at once those with a signal they can take.

A child job (a workflow node's, or a map item's) is admitted like any job; when it ends, the manager
stores the signal its parent's node waits for (`child:<id>`, once per child) and resumes the parent.
Cancelling a job cancels its unfinished children, and theirs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from actors.job_loop.job_writer import JobWriter
from actors.ray_runtime import ray_api
from actors.ray_runtime.actor_modes import job_actor_mode, new_job_id
from actors.ray_runtime.executor_pool import EXECUTOR_NAME, start_executor
from actors.ray_runtime.job_actor import JobActor
from actors.ray_runtime.job_capacity import admission_limit, job_slots_wanted
from actors.ray_runtime.llm_limiter import limiter_handle
from actors.ray_runtime.pooled_actors import DEDICATED_PREFIX, SHARED_PREFIX, PooledActor
from actors.ray_runtime.runtime_config import RuntimeConfig
from actors.ray_runtime.wake_queue import WakeQueue
from engine.dag import Dag
from engine.errors import ConflictError, NotFoundError
from engine.ledger import JobLedger
from engine.records import ErrorInfo, JobRecord, JobStatus, SignalRecord, utcnow
from engine.scheduler import CancelRequested, JobState, RuntimeFailed
from engine.waits import awaited_children, child_signal, is_suspended, open_waits, should_resume, wake_at
from storage.job_pages import all_jobs
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

UNFINISHED = (JobStatus.RUNNING, JobStatus.PENDING)
ADOPT_TIMEOUT_S = 10.0
CHILD_SIGNAL_SENDER = "workflow-service"
"""The sender of the signal that tells a parent job its child ended."""
CLUSTER_REFRESH_S = 2.0
"""How often the manager reads the cluster's capacity and retires idle grown executors."""


class _JobActorStarter:
    """Starts and ends the job actors the manager's mode asks for (its `ActorStarter`)."""

    def __init__(self, runtime: RuntimeConfig, spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self._runtime = runtime
        self._spawn = spawn

    def start(self, name: str) -> PooledActor:
        handle = ray_api.start_actor(
            JobActor,
            self._runtime,
            name=name,
            namespace=self._runtime.namespace,
            resources={ray_api.JOB_SLOT: 1},
        )
        return PooledActor(name, ray_api.JobActorHandle(handle))

    async def prepare(self, actor: PooledActor) -> None:
        await actor.handle.prepare()

    def end(self, actor: PooledActor) -> None:
        ray_api.kill(actor.handle.raw)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._spawn(work)


class JobManager:
    def __init__(
        self, runtime: RuntimeConfig, store: Store | None = None, bus: EventBus | None = None
    ) -> None:
        """`store` and `bus`: open ones to use (a manager in the caller's process); the Ray actor is given
        neither and opens its own from `runtime` when it starts."""
        self.runtime = runtime
        runtime.configure_process_logging()
        self._store = store
        self._bus = bus
        self._started = asyncio.Event()
        self._starting = asyncio.Lock()
        starter = _JobActorStarter(runtime, self._spawn)
        self._actors = job_actor_mode(runtime.settings.jobs, runtime.max_active_jobs, starter, self._admit)
        self._queue: deque[str] = deque()
        self._active: dict[str, PooledActor] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._suspended: set[str] = set()
        self._signalled: set[str] = set()
        """Active jobs a signal was stored for during their run: resumed at once if they suspend."""
        self._wake = WakeQueue(self._resume)
        self._parent_of: dict[str, str] = {}
        """Unfinished child jobs -> their parent jobs, told when the child ends."""
        self.peak_active = 0
        self._limit = runtime.max_active_jobs
        """The cap on running jobs: MAX_ACTIVE_JOBS, or what the cluster has room for (job_capacity.py)."""

    # ------------------------------------------------------------ start-up

    async def start(self) -> dict[str, Any]:
        """Idempotent: open the store and bus, start executors, recover jobs, fill the warm pool.
        Every call into the manager starts it, so a manager that Ray restarted after a crash recovers
        its jobs at the first request (the gateway's health checks make one every few seconds)."""
        await self._ensure_started()
        return await self.stats()

    async def _ensure_started(self) -> None:
        async with self._starting:
            if not self._started.is_set():
                self._store = self._store or await self.runtime.open_store()
                self._bus = self._bus or await self.runtime.open_bus()
                self._start_executors()
                await self._recover()
                self._started.set()
                self._actors.refill()
                self._spawn(self._follow_cluster())

    def _start_executors(self) -> None:
        """Start the executors, and through the first a warm worker for CPU nodes (not waited for)."""
        limiter_handle(self.runtime.namespace)
        for index in range(self.runtime.settings.jobs.executor_pool_size):
            executor = start_executor(self.runtime, index)
            if index == 0:
                executor.warm_cpu_worker()

    async def _follow_cluster(self) -> None:
        """Every CLUSTER_REFRESH_S: admit as many jobs as the cluster has room for now, ask its autoscaler
        for the job slots the queue needs, and end the grown executors that have been idle."""
        asked = 0
        while True:
            try:
                if self.runtime.follows_cluster:
                    self._set_limit(admission_limit(self.runtime.settings.jobs, ray_api.cluster_resources()))
                if self.runtime.cluster_autoscales:
                    wanted = job_slots_wanted(self.runtime.settings.jobs, len(self._active), len(self._queue))
                    if wanted != asked:
                        ray_api.request_from_autoscaler([{ray_api.JOB_SLOT: 1.0}] * wanted)
                        asked = wanted
                await self._retire_idle_executors()
            except Exception:
                logger.exception("could not read the cluster's capacity; trying again")
            await asyncio.sleep(CLUSTER_REFRESH_S)

    def _set_limit(self, limit: int) -> None:
        if limit == self._limit:
            return
        logger.info("admission follows the cluster: %d jobs at once (was %d)", limit, self._limit)
        self._limit = limit
        self._admit()

    async def _retire_idle_executors(self) -> None:
        jobs = self.runtime.settings.jobs
        prefix = EXECUTOR_NAME.format(index="")
        for name in ray_api.named_actors(self.runtime.namespace, prefix):
            index = name.removeprefix(prefix)
            if not index.isdigit() or int(index) < jobs.executor_pool_size:
                continue
            raw = ray_api.get_actor(name, self.runtime.namespace)
            if raw is None:
                continue
            try:
                if await ray_api.ExecutorHandle(raw).retire_if_idle(
                    self.runtime.settings.jobs.executor_idle_s
                ):
                    logger.info("grown executor %s was idle; it ended", name)
            except ray_api.ActorDiedError:
                logger.info("grown executor %s ended", name)

    async def _recover(self) -> None:
        """Resume what a previous run left: running jobs first, then pending ones, oldest first.
        Job actors that are alive and running a stored job are adopted; idle leftovers are ended."""
        unfinished = await all_jobs(self._require_store(), status=UNFINISHED)
        unfinished.sort(key=lambda job: (job.status is not JobStatus.RUNNING, job.created_at))
        unfinished_ids = {job.id for job in unfinished}
        for name in self._leftover_actors():
            raw = ray_api.get_actor(name, self.runtime.namespace)
            if raw is None:
                continue
            handle = ray_api.JobActorHandle(raw)
            running = await self._jobs_running_on(name, handle) & unfinished_ids
            if not running:
                ray_api.kill(raw)
                continue
            member = PooledActor(name, handle)
            self._actors.adopt(member, len(running))
            for job_id in sorted(running):
                self._active[job_id] = member
                self._spawn(self._adopt(job_id, member))
        for job in unfinished:
            if job.parent_job_id is not None:
                self._parent_of[job.id] = job.parent_job_id
            if job.id in self._active:
                continue
            if is_suspended(job.status, job.nodes):
                await self._recover_suspended(job)
            else:
                self._queue.append(job.id)
        if unfinished:
            logger.info("recovered %d unfinished jobs (%d adopted)", len(unfinished), len(self._active))
        self._admit()

    async def _recover_suspended(self, job: JobRecord) -> None:
        """A job that was suspended when the last manager stopped: resumed now if a signal it can take
        arrived meanwhile (or its deadline passed), else kept until then."""
        for _, wait in open_waits(job.nodes):
            for child_id in awaited_children(wait):
                try:
                    await self._store_child_ended(child_id, job.id)
                except NotFoundError:
                    logger.error("job %s waits for child job %s, which is not stored", job.id, child_id)
        signals = await self._require_store().list_signals(job.id)
        due = wake_at(job.nodes)
        self._suspended.add(job.id)
        if should_resume(job.nodes, signals):
            self._queue.append(job.id)
            self._suspended.discard(job.id)
        elif due is not None:
            self._wake.schedule(job.id, due)

    async def _jobs_running_on(self, name: str, handle: ray_api.JobActorHandle) -> set[str]:
        """The jobs a leftover actor is running now: asked, not read from the store, so a job handed to it
        just before the last manager stopped (its run not yet begun, nothing stored) is adopted too."""
        try:
            info = await asyncio.wait_for(handle.info(), ADOPT_TIMEOUT_S)
        except (TimeoutError, ray_api.ActorDiedError) as exc:
            logger.warning("leftover job actor %s did not say what it runs (%s); it is ended", name, exc)
            return set()
        return set(info["current_jobs"])

    def _leftover_actors(self) -> list[str]:
        names = ray_api.named_actors(self.runtime.namespace)
        return [name for name in names if name.startswith((DEDICATED_PREFIX, SHARED_PREFIX))]

    async def _adopt(self, job_id: str, member: PooledActor) -> None:
        status = None
        try:
            status = await member.handle.wait_job(job_id)
        except ray_api.ActorDiedError:
            logger.warning("adopted actor %s died; job %s is queued again", member.name, job_id)
            self._queue.appendleft(job_id)
        finally:
            self._release(job_id, member)
        await self._after_run(job_id, status)

    # ------------------------------------------------------------ submit

    async def submit(self, job: JobRecord) -> JobRecord:
        """Store a new job (or return the one its idempotency key already made) and admit or queue it."""
        await self._ensure_started()
        store = self._require_store()
        member = self._actors.ready() if len(self._active) < self._limit else None
        job = job.model_copy(
            update={
                "id": (member.reserved_job_id if member else None) or new_job_id(),
                "actor_name": member.name if member else None,
            }
        )
        try:
            stored = await store.create_job(job)
        except BaseException:
            if member is not None:
                self._actors.give_back(member)
            raise
        if stored.id != job.id:
            if member is not None:
                self._actors.give_back(member)
            return stored
        if stored.parent_job_id is not None:
            self._parent_of[stored.id] = stored.parent_job_id
        if member is not None:
            self._begin(stored.id, member, stored)
        else:
            self._queue.append(stored.id)
            self._admit()
        self._actors.refill()
        return stored

    def _admit(self) -> None:
        while self._queue and len(self._active) < self._limit:
            job_id = self._queue.popleft()
            self._begin(job_id, self._actors.for_job(job_id))

    def _begin(self, job_id: str, member: PooledActor, created: JobRecord | None = None) -> None:
        self._suspended.discard(job_id)
        self._signalled.discard(job_id)
        self._wake.discard(job_id)
        self._active[job_id] = member
        self.peak_active = max(self.peak_active, len(self._active))
        self._spawn(self._run(job_id, member, created))

    async def _run(self, job_id: str, member: PooledActor, created: JobRecord | None) -> None:
        """Run a job on its actor. A job begun as it was `created` already names its actor, so it
        costs the store nothing more here; a queued one is read again (it may have been cancelled)."""
        store = self._require_store()
        status = None
        try:
            job = created or await store.get_job(job_id)
            if job.status.is_terminal:
                return
            status = await member.handle.run_job(job_id)
        except ray_api.ActorDiedError as exc:
            logger.error("job actor %s for job %s died for good: %s", member.name, job_id, exc)
            await self._fail_unrunnable(job_id, f"its job actor died: {exc}")
        except Exception as exc:
            logger.exception("job %s could not run", job_id)
            await self._fail_unrunnable(job_id, f"{type(exc).__name__}: {exc}")
        finally:
            self._release(job_id, member)
        await self._after_run(job_id, status)

    async def _after_run(self, job_id: str, status: str | None) -> None:
        """A run of the job ended: keep it suspended if it waits, or tell its parent if it ended."""
        if status == JobStatus.RUNNING.value:
            await self._keep_suspended(job_id)
        elif job_id in self._parent_of:
            await self._tell_parent(job_id)

    async def _keep_suspended(self, job_id: str) -> None:
        """The job's run ended with the job waiting: keep its earliest deadline, or resume it at once when
        a signal was stored for it while it ran (its runner may have read the signals before it came)."""
        job = await self._require_store().get_job(job_id)
        if job.status.is_terminal or job_id in self._active or job_id in self._queue:
            return
        if job_id in self._signalled or not is_suspended(job.status, job.nodes):
            self._signalled.discard(job_id)
            self._resume(job_id)
            return
        self._suspended.add(job_id)
        due = wake_at(job.nodes)
        if due is not None:
            self._wake.schedule(job_id, due)

    # ------------------------------------------------------------ waits

    async def signal(self, job_id: str) -> None:
        """A signal for the job was stored: its runner reads it, or the suspended job is resumed."""
        await self._ensure_started()
        member = self._active.get(job_id)
        if member is None:
            self._resume(job_id)
            return
        self._signalled.add(job_id)
        try:
            await member.handle.deliver_signals(job_id)
        except ray_api.ActorDiedError:
            logger.warning("job %s: its actor died before it took a signal; it resumes", job_id)

    async def _tell_parent(self, child_id: str) -> None:
        """The child job ended (or may have): store the signal its parent's node waits for, and resume the
        parent. Stored once per child (its idempotency key), however often this runs."""
        parent_id = self._parent_of.get(child_id)
        if parent_id is None:
            return
        try:
            if await self._store_child_ended(child_id, parent_id):
                self._parent_of.pop(child_id, None)
                await self.signal(parent_id)
        except Exception:
            logger.exception("could not tell job %s that its child job %s ended", parent_id, child_id)

    async def _store_child_ended(self, child_id: str, parent_id: str) -> bool:
        """Store the signal that the child ended, if it has; whether it has."""
        store = self._require_store()
        child = await store.get_job(child_id)
        if not child.status.is_terminal:
            return False
        payload = {
            "status": child.status.value,
            "result": child.result,
            "error": None if child.error is None else child.error.model_dump(),
        }
        signal = SignalRecord(
            id=uuid.uuid4().hex,
            job_id=parent_id,
            name=child_signal(child_id),
            payload=payload,
            sender=CHILD_SIGNAL_SENDER,
            idempotency_key=f"ended:{child_id}",
        )
        await store.put_signal(signal)
        return True

    async def _cancel_children(self, job_id: str) -> None:
        """Cancel the job's unfinished child jobs (each cancels its own)."""
        for child in await all_jobs(self._require_store(), parent_job_id=job_id, status=UNFINISHED):
            try:
                await self.cancel(child.id)
            except ConflictError:
                logger.info("child job %s of job %s ended before it could be cancelled", child.id, job_id)

    def _resume(self, job_id: str) -> None:
        """Queue a suspended job (a due deadline, a signal), unless it runs or waits in the queue already."""
        if job_id in self._active or job_id in self._queue:
            return
        self._suspended.discard(job_id)
        self._queue.append(job_id)
        self._admit()

    def _release(self, job_id: str, member: PooledActor) -> None:
        self._active.pop(job_id, None)
        self._actors.release(member)
        self._admit()
        self._actors.refill()

    # ------------------------------------------------------------ cancel

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: running work is stopped by its actor; a queued job is cancelled in the store.
        Cancelling a cancelled job is harmless; a completed or failed one is a conflict. Its unfinished
        child jobs are cancelled with it."""
        cancelled = await self._cancel_one(job_id)
        await self._cancel_children(job_id)
        if cancelled.status.is_terminal and job_id in self._parent_of:
            await self._tell_parent(job_id)
        return cancelled

    async def _cancel_one(self, job_id: str) -> JobRecord:
        await self._ensure_started()
        store = self._require_store()
        job = await store.get_job(job_id)
        if job.status is JobStatus.CANCELLED:
            return job
        if job.status.is_terminal:
            raise ConflictError(
                f"job {job_id} already {job.status.value}; only pending or running jobs can be cancelled"
            )
        member = self._active.get(job_id)
        if member is not None and job.status is JobStatus.RUNNING:
            if await self._cancel_on_actor(member, job_id):
                return await self._await_terminal(job_id)
            job = await store.get_job(job_id)
            if job.status.is_terminal:
                return job
        elif member is not None:
            await self._cancel_on_actor(member, job_id)
        if job_id in self._queue:
            self._queue.remove(job_id)
        self._suspended.discard(job_id)
        self._wake.discard(job_id)
        try:
            return await self._cancel_in_store(job)
        except ConflictError:
            return await self._await_terminal(job_id)

    @staticmethod
    async def _cancel_on_actor(member: PooledActor, job_id: str) -> bool:
        """Whether the job's runner on the actor took the cancel. Not when its run ended meanwhile (the job
        suspended to wait, and a dedicated actor was ended with it): then no actor runs the job."""
        try:
            return await member.handle.cancel_job(job_id)
        except ray_api.ActorDiedError:
            return False

    async def _cancel_in_store(self, job: JobRecord) -> JobRecord:
        reason = "cancelled while waiting" if job.status is JobStatus.RUNNING else "cancelled while pending"
        await self._end_outside_actor(job, CancelRequested(utcnow(), reason))
        return await self._require_store().get_job(job.id)

    async def _end_outside_actor(self, job: JobRecord, event: CancelRequested | RuntimeFailed) -> None:
        """End a job no actor runs, through the scheduling step as its actor would, publishing with it what
        the job's outbox still held (its actor may have died before publishing it; the bus drops what its
        stream already has)."""
        workflow = await self._require_store().get_workflow(job.workflow_id, job.workflow_version)
        dag = Dag.from_definition(workflow.definition)
        ledger = JobLedger(
            dag,
            JobState.restore(dag, job.status, job.nodes),
            job.id,
            job.workflow_id,
            utcnow,
            sequence=job.event_sequence,
        )
        writer = JobWriter(ledger, self._require_store(), self._require_bus(), job.version)
        await writer.commit([event], unpublished=job.pending_events)

    async def _await_terminal(self, job_id: str, timeout_s: float = 10.0) -> JobRecord:
        store = self._require_store()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            job = await store.get_job(job_id)
            if job.status.is_terminal or asyncio.get_running_loop().time() > deadline:
                return job
            await asyncio.sleep(0.02)

    async def _fail_unrunnable(self, job_id: str, reason: str) -> None:
        try:
            job = await self._require_store().get_job(job_id)
            if job.status.is_terminal:
                return
            error = ErrorInfo(type="job_runtime_error", message=reason)
            await self._end_outside_actor(job, RuntimeFailed(utcnow(), error))
        except (ConflictError, NotFoundError):
            logger.exception("could not mark job %s failed", job_id)

    # ------------------------------------------------------------ introspection

    async def stats(self) -> dict[str, Any]:
        """Counts of jobs and job actors; `pool` is the warm pool (dedicated mode) or the shared actors
        (reuse); `suspended` the jobs that wait holding nothing, `timers` those of them with a deadline, and
        how late the last timers woke their jobs; `unreadable_rows` the stored rows this manager could not
        read (its recovery skipped them)."""
        await self._ensure_started()
        return {
            "mode": self.runtime.settings.jobs.actor_mode.value,
            "active": len(self._active),
            "pending": len(self._queue),
            "suspended": len(self._suspended),
            "timers": len(self._wake),
            **self._wake.lateness(),
            "pool": self._actors.warm(),
            "max_active_jobs": self._limit,
            "peak_active": self.peak_active,
            "unreadable_rows": self._require_store().unreadable_rows(),
        }

    async def shutdown(self) -> None:
        """End idle job actors (used when the service stops a local Ray instance it owns)."""
        self._actors.shutdown()

    # ------------------------------------------------------------ helpers

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("job manager not started")
        return self._store

    def _require_bus(self) -> EventBus:
        if self._bus is None:
            raise RuntimeError("job manager not started")
        return self._bus
