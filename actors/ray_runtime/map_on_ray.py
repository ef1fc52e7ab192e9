"""The map node's fan-out on Ray: batches to executor actors for I/O children, tasks for CPU children."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Sequence
from typing import Any

from actors.job_loop.map_items import InProcessFanOut, Tally, bounded, run_item
from actors.ray_runtime import ray_api
from actors.ray_runtime.executor_pool import ExecutorPool
from actors.ray_runtime.node_executor import RemoteBatch, remote_call, run_as_task
from actors.ray_runtime.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeType
from nodes.map import GraphChild, ItemOutcome, MapChild, MapNode, ProgressCallback

ITEMS_PER_EXECUTOR = 5000


class RayFanOut:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self._runtime = runtime

    async def run(
        self,
        child: MapChild,
        configs: Sequence[dict[str, Any]],
        parent: NodeContext,
        max_concurrency: int,
        fail_fast: bool,
        on_progress: ProgressCallback,
    ) -> list[ItemOutcome]:
        if child.execution is Execution.INLINE:
            in_process = InProcessFanOut()
            return await in_process.run(child, configs, parent, max_concurrency, fail_fast, on_progress)
        tally = Tally(len(configs), on_progress)
        if isinstance(child, NodeType) and child.execution is Execution.CPU:
            await self._cpu_tasks(child, configs, parent, max_concurrency, fail_fast, tally)
        else:
            await self._executor_batches(child, configs, parent, max_concurrency, fail_fast, tally)
        return tally.in_order()

    async def _executor_batches(
        self,
        child: MapChild,
        configs: Sequence[dict[str, Any]],
        parent: NodeContext,
        max_concurrency: int,
        fail_fast: bool,
        tally: Tally,
    ) -> None:
        """One streaming call per executor taking part, each with its share of the items and of the
        concurrency. Waiting calls are cheap in one process (a thousand coroutines), while every extra
        executor adds coordination and, on a small machine, a process competing for cores: a map is
        spread over more executors only beyond ITEMS_PER_EXECUTOR items."""
        executors = await self._executors.handles()
        wanted = math.ceil(len(configs) / ITEMS_PER_EXECUTOR)
        shares = max(1, min(len(executors), wanted, max_concurrency))
        indexed = list(enumerate(configs))
        streams = []
        for share in range(shares):
            items = indexed[share::shares]
            limit = max_concurrency // shares + (1 if share < max_concurrency % shares else 0)
            graph = child if isinstance(child, GraphChild) else None
            node_type = MapNode.type_name if graph else child.type_name
            batch = RemoteBatch(
                remote_call(self._runtime, node_type, parent, {}),
                items,
                limit,
                fail_fast,
                graph=graph,
                task_prefix=self._workflow_name,
            )
            streams.append(ray_api.call_streaming(executors[share], "execute_batch", batch))
        failed = asyncio.Event()

        async def drain(stream: Any) -> None:
            async for chunk in ray_api.iterate_stream(stream):
                await tally.add(chunk, parent.log)
                if fail_fast and any(outcome.error is not None for outcome in chunk):
                    failed.set()
                    return

        tasks = [asyncio.ensure_future(drain(stream)) for stream in streams]
        try:
            for next_done in asyncio.as_completed(tasks):
                await next_done
                if failed.is_set():
                    break
        finally:
            for task in tasks:
                task.cancel()
            for stream in streams:
                ray_api.cancel(stream)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _cpu_tasks(
        self,
        child: NodeType[Any],
        configs: Sequence[dict[str, Any]],
        parent: NodeContext,
        max_concurrency: int,
        fail_fast: bool,
        tally: Tally,
    ) -> None:
        on_a_worker = functools.partial(run_as_task, self._runtime, self._workflow_name)
        jobs = [
            (lambda i=index, c=config: run_item(child, c, parent.for_item(i), i, on_a_worker))
            for index, config in enumerate(configs)
        ]
        async for outcome in bounded(jobs, max_concurrency, fail_fast):
            await tally.add([outcome])
