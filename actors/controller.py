"""The Python API the gateway uses, under the platform's documented names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors import ray_api
from actors.executor_pool import ExecutorPool
from actors.manager import MANAGER_NAME, JobManager
from actors.ray_launcher import RayLauncher
from actors.runtime_config import RuntimeConfig
from engine.records import JobRecord, JobStatus, Page
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult
from storage.protocols import Store


class WorkflowController:
    def __init__(self, store: Store, manager: ray_api.ActorHandle, runtime: RuntimeConfig) -> None:
        self._store = store
        self._manager = manager
        self._runtime = runtime

    @classmethod
    async def connect(cls, runtime: RuntimeConfig, store: Store) -> WorkflowController:
        """Find or start the cluster's job manager actor and wait until it has recovered."""
        manager = ray_api.start_actor(
            JobManager,
            runtime,
            name=MANAGER_NAME,
            namespace=runtime.namespace,
            get_if_exists=True,
            on_head=True,
        )
        await ray_api.result(ray_api.call(manager, "start"))
        return cls(store, manager, runtime)

    async def create_job(
        self,
        workflow_id: str,
        input_data: dict[str, Any],
        owner: str = "anonymous",
        idempotency_key: str | None = None,
        owner_roles: Iterable[str] = (),
    ) -> JobRecord:
        """Create a job for the workflow's latest version and start it (or queue it as pending). The
        owner's roles are kept with the job: they decide which operator secrets it may use."""
        workflow = await self._store.get_workflow(workflow_id)
        job = JobRecord(
            id="",
            owner=owner,
            owner_roles=sorted(set(owner_roles)),
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            input=input_data,
            idempotency_key=idempotency_key,
        )
        return await ray_api.result(ray_api.call(self._manager, "submit", job))

    async def execute_workflow(
        self,
        workflow_id: str,
        input_data: dict[str, Any],
        owner: str = "anonymous",
        idempotency_key: str | None = None,
        owner_roles: Iterable[str] = (),
    ) -> JobRecord:
        return await self.create_job(workflow_id, input_data, owner, idempotency_key, owner_roles)

    async def get_job_status(self, job_id: str) -> JobRecord:
        return await self._store.get_job(job_id)

    async def cancel_job(self, job_id: str) -> JobRecord:
        return await ray_api.result(ray_api.call(self._manager, "cancel", job_id, retry_on_restart=False))

    async def list_jobs(
        self,
        owner: str | None = None,
        workflow_id: str | None = None,
        status: JobStatus | Sequence[JobStatus] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[JobRecord]:
        return await self._store.list_jobs(owner, workflow_id, status, offset, limit)

    async def test_node(
        self,
        node_type: str,
        config: dict[str, Any],
        input_data: dict[str, Any],
        secrets: Mapping[str, str],
        timeout_s: float = 60.0,
    ) -> NodeResult:
        """Run one node once, outside any job, where a job would run it (executor actor, Ray task,
        sandbox for user code) and under the same limits. Templates read `input` and `secrets` (those a
        job of the caller could read)."""
        node = self._runtime.registry().get(node_type)
        scope = TemplateContext(input=input_data, secrets=secrets)
        parsed = node.render_config(config, scope, node_type)
        ctx = NodeContext(
            job_id="test",
            workflow_id="test",
            node_id=node_type,
            attempt=1,
            scope=scope,
            services={"settings": self._runtime.node_settings},
        )
        launcher = RayLauncher(ExecutorPool(self._runtime), "node-test", self._runtime)
        return await asyncio.wait_for(launcher.run(node, parsed, ctx), timeout=timeout_s)

    async def stats(self) -> dict[str, Any]:
        return await ray_api.result(ray_api.call(self._manager, "stats"))
