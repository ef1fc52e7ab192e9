"""The map node's fan-out on Ray: I/O children and sub-graphs go to the executor actors in a few large
batches, each run there as coroutines under its share of the concurrency bound and streaming its outcomes
back in chunks; CPU children are Ray tasks with at most `max_concurrency` in flight; inline children run in
place."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from actors.job_loop.map_items import InProcessFanOut, Tally, bounded, chunked, item_jobs, run_item
from actors.ray_runtime.remote_calls import RemoteCall, remote_call, run_as_task
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import NodeExecutionError
from engine.records import LogLevel
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.map import GraphChild, ItemOutcome, MapItems, MapNode
from nodes.services import NodeServices

if TYPE_CHECKING:
    from actors.ray_runtime.executor_pool import ExecutorPool

ITEMS_PER_EXECUTOR = 5000


@dataclass(frozen=True)
class RemoteBatch:
    """Many items of one map node for one executor: configs of its child type (`call.node_type`), or the
    locals of its sub-graph (`graph`: a map item's, a loop iteration's), whose CPU nodes become Ray tasks
    named `<task_prefix>:<node>`."""

    call: RemoteCall
    items: list[tuple[int, dict[str, Any]]]
    max_concurrency: int
    fail_fast: bool
    graph: GraphChild | None = None
    task_prefix: str = ""


async def execute_batch_here(
    batch: RemoteBatch, services: NodeServices, runtime: RuntimeConfig | None = None
) -> AsyncIterator[list[ItemOutcome]]:
    """Run a batch as coroutines under its concurrency bound, yielding outcomes in chunks as they finish;
    each item's log lines come back with its outcome. A sub-graph's CPU nodes need `runtime` to be sent
    out as Ray tasks."""
    call = batch.call
    child = batch.graph or services.registry.get(call.node_type)

    async def launch(node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is not Execution.CPU:
            return await node.execute(config, ctx)
        if runtime is None:
            raise NodeExecutionError(f"node '{ctx.node_id}' needs a core of its own, which only Ray gives")
        return await run_as_task(runtime, batch.task_prefix, node, config, ctx)

    async def logged_item(index: int, config: dict[str, Any]) -> ItemOutcome:
        logs: list[tuple[LogLevel, str, dict[str, Any]]] = []
        ctx = call.context(services, lambda level, message, data: logs.append((level, message, data)))
        outcome = await run_item(child, config, ctx.for_item(index), index, launch)
        return replace(outcome, logs=tuple(logs)) if logs else outcome

    jobs = [(lambda i=index, c=config: logged_item(i, c)) for index, config in batch.items]
    async for chunk in chunked(bounded(jobs, batch.max_concurrency, batch.fail_fast)):
        yield chunk


class RayFanOut:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self._runtime = runtime

    async def run(self, items: MapItems) -> list[ItemOutcome]:
        if items.child.execution is Execution.INLINE:
            return await InProcessFanOut().run(items)
        tally = Tally(len(items.configs), items.on_progress)
        if isinstance(items.child, NodeType) and items.child.execution is Execution.CPU:
            await self._cpu_tasks(items, tally)
        else:
            await self._executor_batches(items, tally)
        return tally.in_order()

    async def _executor_batches(self, items: MapItems, tally: Tally) -> None:
        """One streaming call per executor taking part, each with its share of the items and of the
        concurrency. Waiting calls are cheap in one process (a thousand coroutines), while every extra
        executor adds coordination and, on a small machine, a process competing for cores: a map is
        spread over more executors only beyond ITEMS_PER_EXECUTOR items, growing the pool for them when
        it has fewer (executor_pool.py). A share starts as soon as its executor is there."""
        child, parent, fail_fast = items.child, items.parent, items.fail_fast
        max_concurrency = items.max_concurrency
        wanted = min(math.ceil(len(items.configs) / ITEMS_PER_EXECUTOR), max_concurrency)
        shares = max(1, await self._executors.share_count(wanted))
        indexed = list(enumerate(items.configs, items.start_index))
        graph = child if isinstance(child, GraphChild) else None
        node_type = child.type_name if isinstance(child, NodeType) else MapNode.type_name
        failed = asyncio.Event()

        async def run_share(share: int) -> None:
            limit = max_concurrency // shares + (1 if share < max_concurrency % shares else 0)
            batch = RemoteBatch(
                remote_call(self._runtime, node_type, parent, {}),
                indexed[share::shares],
                limit,
                fail_fast,
                graph=graph,
                task_prefix=self._workflow_name,
            )
            stream = (await self._executors.for_share(share)).execute_batch(batch)
            try:
                async for chunk in stream.chunks():
                    await tally.add(chunk, parent.log)
                    if fail_fast and any(outcome.error is not None for outcome in chunk):
                        failed.set()
                        return
            finally:
                stream.cancel()

        tasks = [asyncio.ensure_future(run_share(share)) for share in range(shares)]
        try:
            for next_done in asyncio.as_completed(tasks):
                await next_done
                if failed.is_set():
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _cpu_tasks(self, items: MapItems, tally: Tally) -> None:
        async def on_a_worker(node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
            return await self._executors.run(node, config, ctx, self._workflow_name)

        async for outcome in bounded(item_jobs(items, on_a_worker), items.max_concurrency, items.fail_fast):
            await tally.add([outcome])
