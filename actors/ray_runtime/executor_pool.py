"""Finds the shared executor actors by name, waiting briefly while the job manager still starts them, and
sends them a job's node attempts; grows the pool for a large fan-out.

The base executors (EXECUTOR_POOL_SIZE) live on the head node, which the autoscaler never removes, and serve
every job. A fan-out that wants more executors than that (about one per ITEMS_PER_EXECUTOR items) starts
more, up to EXECUTOR_POOL_MAX: each takes an `executor_slot`, spread over the nodes that offer one, and
its share of the items waits for it to be placed, by the autoscaler on a new node if none has room, for at
most PLACEMENT_WAIT_S, then runs on a base executor instead. A grown executor is shared like the base ones
and ends once idle for EXECUTOR_IDLE_S (the job manager retires it), so its node can leave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel

from actors.ray_runtime import ray_api
from actors.ray_runtime.node_executor import NodeExecutor
from actors.ray_runtime.remote_calls import outcome_result, remote_call
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import RetryableNodeError
from nodes.base import Execution, NodeContext, NodeResult, NodeType

logger = logging.getLogger(__name__)

EXECUTOR_NAME = "node-executor-{index}"
EXECUTOR_MAX_CONCURRENCY = 1000
"""Calls one executor actor runs at once (node attempts and map batches, each a coroutine)."""
LOOKUP_TIMEOUT_S = 30.0
PLACEMENT_WAIT_S = 120.0
"""How long a fan-out's share waits for a grown executor to be placed: an autoscaler adding a node for it
takes one to three minutes on a cloud."""
UNPLACEABLE_PAUSE_S = 600.0
"""After a grown executor found no place in time, how long fan-outs run on the base executors only."""


def start_executor(runtime: RuntimeConfig, index: int) -> ray_api.ExecutorHandle:
    """The executor `node-executor-<index>`, started unless it runs: a base one on the head node, a grown
    one (index EXECUTOR_POOL_SIZE and up) on a node with an `executor_slot`, spread from the others."""
    grown = index >= runtime.settings.jobs.executor_pool_size
    handle = ray_api.start_actor(
        NodeExecutor,
        runtime,
        name=EXECUTOR_NAME.format(index=index),
        namespace=runtime.namespace,
        max_concurrency=EXECUTOR_MAX_CONCURRENCY,
        get_if_exists=True,
        on_head=not grown,
        resources={ray_api.EXECUTOR_SLOT: 1} if grown else None,
        spread=grown,
    )
    return ray_api.ExecutorHandle(handle)


async def _placed(executor: ray_api.ExecutorHandle) -> bool:
    return await executor.ping()


class ExecutorPool:
    def __init__(self, runtime: RuntimeConfig) -> None:
        self._runtime = runtime
        self._handles: list[ray_api.ExecutorHandle] = []
        self._unplaceable_until = 0.0

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

    def growth_room(self) -> int:
        """How many executors a fan-out may add to the base ones now: up to EXECUTOR_POOL_MAX on a cluster
        that autoscales, else as many as its nodes offer executor slots."""
        jobs = self._runtime.settings.jobs
        room = jobs.executor_pool_max - jobs.executor_pool_size
        if room <= 0 or time.monotonic() < self._unplaceable_until:
            return 0
        if self._runtime.cluster_autoscales:
            return room
        return min(room, int(ray_api.cluster_resources().get(ray_api.EXECUTOR_SLOT, 0.0)))

    async def share_count(self, wanted: int) -> int:
        """How many executors a fan-out that wants `wanted` of them gets."""
        base = len(await self.handles())
        return min(wanted, base + self.growth_room()) if wanted > base else wanted

    async def for_share(self, share: int) -> ray_api.ExecutorHandle:
        """The executor for a fan-out's share `share` (of `share_count`): a base one, or a grown one once it
        is placed (a base one if it is not placed within PLACEMENT_WAIT_S)."""
        base = await self.handles()
        if share < len(base):
            return base[share]
        for _ in range(2):
            grown = start_executor(self._runtime, share)
            try:
                await asyncio.wait_for(_placed(grown), PLACEMENT_WAIT_S)
                return grown
            except ray_api.ActorDiedError:
                continue  # it retired, idle, just now: start it again
            except TimeoutError:
                ray_api.kill(grown.raw)
                self._unplaceable_until = time.monotonic() + UNPLACEABLE_PAUSE_S
                logger.warning(
                    "executor %s found no node with an '%s' in %.0f s; fan-outs use the %d base executors "
                    "for %.0f s",
                    EXECUTOR_NAME.format(index=share),
                    ray_api.EXECUTOR_SLOT,
                    PLACEMENT_WAIT_S,
                    len(base),
                    UNPLACEABLE_PAUSE_S,
                )
                break
        return base[share % len(base)]

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
