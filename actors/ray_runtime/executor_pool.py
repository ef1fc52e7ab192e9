"""Finds the shared executor actors by name, waiting briefly while the job manager still starts them, and
sends them a job's node attempts."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from actors.ray_runtime import ray_api
from actors.ray_runtime.remote_calls import outcome_result, remote_call
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import RetryableNodeError
from nodes.base import Execution, NodeContext, NodeResult, NodeType

EXECUTOR_NAME = "node-executor-{index}"
LOOKUP_TIMEOUT_S = 30.0


class ExecutorPool:
    def __init__(self, runtime: RuntimeConfig) -> None:
        self._runtime = runtime
        self._handles: list[ray_api.ExecutorHandle] = []

    def _lookup(self) -> list[ray_api.ExecutorHandle]:
        names = (
            EXECUTOR_NAME.format(index=index)
            for index in range(self._runtime.settings.jobs.executor_pool_size)
        )
        found = (ray_api.get_actor(name, self._runtime.namespace) for name in names)
        return [ray_api.ExecutorHandle(handle) for handle in found if handle is not None]

    async def handles(self) -> list[ray_api.ExecutorHandle]:
        """The executors, looked up once they exist; a retryable error if none appears in time."""
        if self._handles:
            return self._handles
        deadline = asyncio.get_running_loop().time() + LOOKUP_TIMEOUT_S
        while not (found := self._lookup()):
            if asyncio.get_running_loop().time() > deadline:
                raise RetryableNodeError(
                    f"no executor actor '{EXECUTOR_NAME.format(index=0)}' in namespace "
                    f"'{self._runtime.namespace}' after {LOOKUP_TIMEOUT_S:.0f} s; is the job manager running?"
                )
            await asyncio.sleep(0.1)
        self._handles = found
        return found

    async def pick(self, key: object) -> ray_api.ExecutorHandle:
        handles = await self.handles()
        return handles[hash(key) % len(handles)]

    async def run(
        self, node: NodeType[Any], config: BaseModel, ctx: NodeContext, task_prefix: str
    ) -> NodeResult:
        """One attempt of an I/O node as a coroutine in an executor, or of a CPU node as a Ray task named
        `<task_prefix>:<node id>` that an executor submits and so owns. A task's worker stays leased to
        its owner until the owner gives it back or dies: owned by a job actor that lives for one job, each
        attempt got a fresh worker (lease, start, the runtime's imports: about a second here), while the
        executors live as long as the service, so their workers stay warm from one job to the next."""
        executor = await self.pick((ctx.job_id, ctx.node_id))
        call = remote_call(self._runtime, node.type_name, ctx, config.model_dump(mode="json"))
        if node.execution is Execution.CPU:
            pending = executor.run_cpu(call, f"{task_prefix}:{ctx.node_id}")
        else:
            pending = executor.execute(call)
        return outcome_result(await pending.stopped_with_caller(force_cancel=False), ctx)
