"""The Ray actor that owns a job's DAG state while the job runs.

Dedicated mode: one actor per job, named `job:<job_id>`. Reuse mode: an actor named
`job-runner:<id>` runs many jobs at once, each as its own `run_job` coroutine with its own JobRunner;
they share only the actor's store, bus, executor handles and node registry. Either way the actor is
detached and restartable: after a crash Ray runs the constructor again and retries every `run_job`
that was in flight, each resuming from its job's checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from actors.job_loop.child_jobs import ChildJobStarter
from actors.job_loop.job_runner import JobRunner, RunnerServices
from actors.ray_runtime import ray_api, ray_metrics
from actors.ray_runtime.executor_pool import ExecutorPool
from actors.ray_runtime.llm_limiter import ClusterLimiter
from actors.ray_runtime.ray_launcher import RayLauncher
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.dag import Dag
from engine.errors import ConflictError
from engine.records import JobRecord
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

WORKFLOW_CACHE_SIZE = 128


class JobActor:
    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        runtime.configure_process_logging()
        self._store: Store | None = None
        self._bus: EventBus | None = None
        self._open_lock = asyncio.Lock()
        self._runners: dict[str, JobRunner] = {}
        self._cancel_requested: set[str] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._executors = ExecutorPool(runtime)
        self._limiter = ClusterLimiter.for_nodes(runtime.namespace, runtime.settings.nodes)
        self._registry = runtime.registry()
        self._workflows: dict[tuple[str, int], tuple[str, Dag]] = {}
        self.jobs_run = 0

    async def _open(self) -> tuple[Store, EventBus]:
        async with self._open_lock:
            if self._store is None or self._bus is None:
                self._store = await self.runtime.open_store()
                self._bus = await self.runtime.open_bus()
        return self._store, self._bus

    async def prepare(self) -> dict[str, object]:
        """Open the store and the bus and reach every executor now, so the first job this actor runs
        starts at once and its first remote node pays no connection set-up (tens of ms here)."""
        await self._open()
        await asyncio.gather(*(executor.ping() for executor in await self._executors.handles()))
        return await self.info()

    async def run_job(self, job_id: str) -> str:
        """Run (or resume) a job to its end and return its final status, or `running` when the job was
        suspended to wait (the job manager resumes it later); other jobs may run beside it."""
        done = self._done.setdefault(job_id, asyncio.Event())
        ray_metrics.job_run_started()
        started, outcome = time.monotonic(), ray_metrics.ABORTED
        try:
            store, bus = await self._open()
            job = await store.get_job(job_id)
            name, dag = await self._workflow(store, job.workflow_id, job.workflow_version)
            services = RunnerServices(
                store=store,
                bus=bus,
                registry=self._registry,
                launcher=RayLauncher(self._executors, name, self.runtime),
                node_settings=self.runtime.settings.nodes,
                secrets=await self.runtime.secret_vault(store).resolve(job.owner, job.owner_roles),
                actor_name=ray_api.current_actor_name(),
                llm_limiter=self._limiter,
            )
            services.child_jobs = ChildJobStarter(
                store,
                self._submit_child,
                self._cancel_child,
                job,
                self.runtime.settings.jobs.max_workflow_depth,
            )
            runner = JobRunner(services, job, dag)
            self._runners[job_id] = runner
            if job_id in self._cancel_requested:
                runner.cancel()
            status = await runner.run()
            outcome = status.value
            self.jobs_run += 1
            return status.value
        finally:
            ray_metrics.job_run_finished(outcome, time.monotonic() - started)
            self._runners.pop(job_id, None)
            self._cancel_requested.discard(job_id)
            self._done.pop(job_id, None)
            done.set()

    async def _submit_child(self, child: JobRecord) -> JobRecord:
        """A child job, stored and admitted (or queued) by the job manager like any job."""
        return await self._manager().submit(child)

    async def _cancel_child(self, job_id: str) -> None:
        """Cancel a child job through the job manager (which cancels its children too)."""
        try:
            await self._manager().cancel(job_id)
        except ConflictError:
            logger.info("child job %s ended before it could be cancelled", job_id)

    def _manager(self) -> ray_api.JobManagerHandle:
        manager = ray_api.get_actor(ray_api.MANAGER_NAME, self.runtime.namespace)
        if manager is None:
            raise RuntimeError("the job manager is gone; its child jobs cannot be started or cancelled")
        return ray_api.JobManagerHandle(manager)

    async def _workflow(self, store: Store, workflow_id: str, version: int) -> tuple[str, Dag]:
        """A workflow version's name and DAG; a version never changes, so an actor that runs many jobs
        of one workflow reads and builds it once."""
        key = (workflow_id, version)
        if key not in self._workflows:
            workflow = await store.get_workflow(workflow_id, version)
            if len(self._workflows) >= WORKFLOW_CACHE_SIZE:
                self._workflows.pop(next(iter(self._workflows)))
            self._workflows[key] = (workflow.name, Dag.from_definition(workflow.definition))
        return self._workflows[key]

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel one job; the other jobs this actor runs go on undisturbed. True when its runner took the
        cancel; else it is kept for a run of the job that has yet to begin here."""
        runner = self._runners.get(job_id)
        if runner is not None:
            return runner.cancel()
        self._cancel_requested.add(job_id)
        return False

    async def deliver_signals(self, job_id: str) -> bool:
        """A signal for the job was stored: its runner reads the job's signals again. False when the job
        does not run here (any more), so the caller resumes it instead."""
        runner = self._runners.get(job_id)
        if runner is None:
            return False
        runner.signals_arrived()
        return True

    async def wait_job(self, job_id: str) -> str:
        """Return once the run of a job this actor runs has ended (used to adopt running jobs after a
        restart): the job's status, `running` for a job its run left suspended."""
        done = self._done.get(job_id)
        if done is not None:
            await done.wait()
        store, _ = await self._open()
        return (await store.get_job(job_id)).status.value

    async def info(self) -> dict[str, object]:
        return {
            "name": ray_api.current_actor_name(),
            "pid": os.getpid(),
            "node_id": ray_api.current_node_id(),
            "current_jobs": sorted(self._done),
            "jobs_run": self.jobs_run,
        }

    async def shutdown(self) -> None:
        await self._limiter.close()
        if self._bus is not None:
            await self._bus.close()
        if self._store is not None:
            await self._store.close()
