"""Finds the shared executor actors by name, waiting briefly while the job manager still starts them."""

from __future__ import annotations

import asyncio

from actors.ray_runtime import ray_api
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import RetryableNodeError

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
