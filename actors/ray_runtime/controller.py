"""The Python API the gateway uses, under the platform's documented names."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.job_loop.child_jobs import pinned_versions
from actors.ray_runtime import ray_api
from actors.ray_runtime.executor_pool import ExecutorPool
from actors.ray_runtime.manager import JobManager
from actors.ray_runtime.node_executor import NodeTest
from actors.ray_runtime.remote_calls import RemoteNodeError
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.dag import Dag
from engine.errors import ConflictError
from engine.records import JobRecord, JobStatus, NodeCheckpoint, Page, SignalRecord, TriggerRef
from engine.rerun import check_rerun_nodes, kept_checkpoints
from nodes.base import NodeResult
from storage.protocols import Store

logger = logging.getLogger(__name__)


class WorkflowController:
    def __init__(self, store: Store, manager: ray_api.JobManagerHandle, runtime: RuntimeConfig) -> None:
        self._store = store
        self._manager = manager
        self._runtime = runtime
        self._executors = ExecutorPool(runtime)

    @classmethod
    async def connect(cls, runtime: RuntimeConfig, store: Store) -> WorkflowController:
        """Find or start the cluster's job manager actor and wait until it has recovered."""
        manager = ray_api.JobManagerHandle(
            ray_api.start_actor(
                JobManager,
                runtime,
                name=ray_api.MANAGER_NAME,
                namespace=runtime.namespace,
                get_if_exists=True,
                on_head=True,
            )
        )
        await manager.start()
        return cls(store, manager, runtime)

    async def create_job(
        self,
        workflow_id: str,
        input_data: dict[str, Any],
        owner: str = "anonymous",
        idempotency_key: str | None = None,
        owner_roles: Iterable[str] = (),
        trigger: TriggerRef | None = None,
    ) -> JobRecord:
        """Create a job for the workflow's latest version and start it (or queue it as pending). The
        owner's roles are kept with the job: they decide which operator secrets it may use."""
        workflow = await self._store.get_workflow(workflow_id)
        return await self._submit(
            owner,
            owner_roles,
            workflow.id,
            workflow.version,
            input_data,
            idempotency_key,
            called_versions=await pinned_versions(self._store, owner, workflow.definition),
            trigger=trigger,
        )

    async def rerun_job(
        self,
        old: JobRecord,
        owner: str,
        from_nodes: Sequence[str] = (),
        input_data: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        owner_roles: Iterable[str] = (),
    ) -> JobRecord:
        """Start a new job of the ended job's workflow version from its completed checkpoints
        (engine/rerun.py); `from_nodes` and what follows them run again, and a new input runs everything.
        The old job is not changed."""
        if not old.status.is_terminal:
            raise ConflictError(
                f"job {old.id} is {old.status.value}; only a job that has ended (completed, failed or "
                "cancelled) can be re-run"
            )
        workflow = await self._store.get_workflow(old.workflow_id, old.workflow_version)
        dag = Dag.from_definition(workflow.definition)
        check_rerun_nodes(dag, from_nodes)
        return await self._submit(
            owner,
            owner_roles,
            old.workflow_id,
            old.workflow_version,
            old.input if input_data is None else input_data,
            idempotency_key,
            rerun_of=old.id,
            called_versions=old.called_versions,
            nodes={} if input_data is not None else kept_checkpoints(dag, old.id, old.nodes, from_nodes),
        )

    async def _submit(
        self,
        owner: str,
        owner_roles: Iterable[str],
        workflow_id: str,
        workflow_version: int,
        input_data: dict[str, Any],
        idempotency_key: str | None,
        rerun_of: str | None = None,
        nodes: dict[str, NodeCheckpoint] | None = None,
        called_versions: dict[str, int] | None = None,
        trigger: TriggerRef | None = None,
    ) -> JobRecord:
        """A new job of this workflow version, stored and admitted (or queued) by the job manager."""
        job = JobRecord(
            id="",
            owner=owner,
            owner_roles=sorted(set(owner_roles)),
            workflow_id=workflow_id,
            workflow_version=workflow_version,
            input=input_data,
            idempotency_key=idempotency_key,
            rerun_of=rerun_of,
            nodes=nodes or {},
            called_versions=called_versions or {},
            trigger=trigger,
        )
        return await self._manager.submit(job)

    async def execute_workflow(
        self,
        workflow_id: str,
        input_data: dict[str, Any],
        owner: str = "anonymous",
        idempotency_key: str | None = None,
        owner_roles: Iterable[str] = (),
        trigger: TriggerRef | None = None,
    ) -> JobRecord:
        return await self.create_job(workflow_id, input_data, owner, idempotency_key, owner_roles, trigger)

    async def get_job_status(self, job_id: str) -> JobRecord:
        return await self._store.get_job(job_id)

    async def cancel_job(self, job_id: str) -> JobRecord:
        return await self._manager.cancel(job_id)

    async def signal_job(
        self,
        job: JobRecord,
        name: str,
        payload: dict[str, Any],
        sender: str,
        idempotency_key: str | None = None,
    ) -> tuple[SignalRecord, bool]:
        """Store a signal for a job that has not ended, then tell the job manager; True when it is new. A
        repeated Idempotency-Key gets the first signal back, also once the job has ended.
        Stored is delivered: should the manager not hear of it, the job takes it when it next runs, and a
        restarted manager resumes suspended jobs that have a signal to take."""
        if job.status.is_terminal:
            sent = [s for s in await self._store.list_signals(job.id) if s.idempotency_key == idempotency_key]
            if idempotency_key is not None and sent:
                return sent[0], False
            raise ConflictError(f"job {job.id} already {job.status.value}; it takes no more signals")
        signal = SignalRecord(
            id=uuid.uuid4().hex,
            job_id=job.id,
            name=name,
            payload=payload,
            sender=sender,
            idempotency_key=idempotency_key,
        )
        stored, created = await self._store.put_signal(signal)
        try:
            await self._manager.signal(job.id)
        except ray_api.ActorDiedError:
            logger.warning("job %s: the job manager did not hear of signal %s; it recovers it", job.id, name)
        return stored, created

    async def list_jobs(
        self,
        owner: str | None = None,
        workflow_id: str | None = None,
        status: JobStatus | Sequence[JobStatus] | None = None,
        offset: int = 0,
        limit: int = 50,
        parent_job_id: str | None = None,
        trigger_id: str | None = None,
    ) -> Page[JobRecord]:
        return await self._store.list_jobs(
            owner, workflow_id, status, offset, limit, parent_job_id=parent_job_id, trigger_id=trigger_id
        )

    async def test_node(
        self,
        node_type: str,
        config: dict[str, Any],
        input_data: dict[str, Any],
        secrets: Mapping[str, str],
        timeout_s: float = 60.0,
    ) -> NodeResult:
        """Run one node once, outside any job, where a job would run it and under the same limits. The
        whole run, rendering the config included, is one call to an executor actor (a CPU node goes on
        from there as a Ray task), so nothing of it runs in the caller's process. Templates read `input`
        and `secrets` (those a job of the caller could read); an error keeps its type."""
        executor = await self._executors.pick(uuid.uuid4().hex)
        test = executor.test_node(NodeTest(node_type, config, input_data, dict(secrets)))
        outcome = await asyncio.wait_for(test.stopped_with_caller(force_cancel=False), timeout_s)
        if outcome.error is not None:
            raise RemoteNodeError(outcome.error)
        assert outcome.result is not None
        return outcome.result

    async def stats(self) -> dict[str, Any]:
        return await self._manager.stats()
