"""The Ray actor that owns a job's DAG state while the job runs.

Dedicated mode: one actor per job, named `job:<job_id>`. Reuse mode: an actor named
`job-runner:<id>` runs several jobs one after another, never two at once. Either way the actor is
detached and restartable: after a crash Ray runs the constructor again and retries `run_job`, which
resumes from the job's checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os

from actors import ray_api
from actors.job_runner import JobRunner, RunnerServices
from actors.ray_launcher import RayLauncher
from actors.runtime_config import RuntimeConfig
from engine.dag import Dag
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

EXECUTOR_NAME = "node-executor-{index}"


class JobActor:
    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        runtime.configure_process_logging()
        self._store: Store | None = None
        self._bus: EventBus | None = None
        self._open_lock = asyncio.Lock()
        self._runner: JobRunner | None = None
        self._cancel_requested: set[str] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._executors: list[ray_api.ActorHandle] = []
        self.jobs_run = 0

    async def _open(self) -> tuple[Store, EventBus]:
        async with self._open_lock:
            if self._store is None or self._bus is None:
                self._store = await self.runtime.open_store()
                self._bus = await self.runtime.open_bus()
                self._executors = executor_handles(self.runtime)
        return self._store, self._bus

    async def run_job(self, job_id: str) -> str:
        """Run (or resume) a job to its end and return its final status."""
        done = self._done.setdefault(job_id, asyncio.Event())
        try:
            store, bus = await self._open()
            job = await store.get_job(job_id)
            workflow = await store.get_workflow(job.workflow_id, job.workflow_version)
            services = RunnerServices(
                store=store,
                bus=bus,
                registry=self.runtime.registry(),
                launcher=RayLauncher(self._executors, workflow.name, self.runtime),
                node_services={"settings": self.runtime.node_settings},
                secrets=self.runtime.secrets(),
            )
            runner = JobRunner(services, job, Dag.from_definition(workflow.definition))
            self._runner = runner
            if job_id in self._cancel_requested:
                runner.cancel()
            status = await runner.run()
            self.jobs_run += 1
            return status.value
        finally:
            self._runner = None
            self._cancel_requested.discard(job_id)
            done.set()

    async def cancel_job(self, job_id: str) -> None:
        if self._runner is not None and self._runner.job.id == job_id:
            self._runner.cancel()
        else:
            self._cancel_requested.add(job_id)

    async def wait_job(self, job_id: str) -> str:
        """Return once the job this actor runs has ended (used to adopt a running job after a restart)."""
        event = self._done.setdefault(job_id, asyncio.Event())
        store, _ = await self._open()
        job = await store.get_job(job_id)
        if not job.status.is_terminal and (self._runner is not None and self._runner.job.id == job_id):
            await event.wait()
            job = await store.get_job(job_id)
        return job.status.value

    async def info(self) -> dict[str, object]:
        return {
            "name": ray_api.current_actor_name(),
            "pid": os.getpid(),
            "current_job": self._runner.job.id if self._runner else None,
            "jobs_run": self.jobs_run,
        }

    async def shutdown(self) -> None:
        if self._bus is not None:
            await self._bus.close()
        if self._store is not None:
            await self._store.close()


def executor_handles(runtime: RuntimeConfig) -> list[ray_api.ActorHandle]:
    names = (EXECUTOR_NAME.format(index=index) for index in range(runtime.executor_pool_size))
    return [handle for name in names if (handle := ray_api.get_actor(name, runtime.namespace)) is not None]
