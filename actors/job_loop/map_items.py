"""A map node's items in process: one item (a child node, or a sub-graph run by map_subgraph.py), many
under a concurrency bound, their outcomes chunked and tallied.

`InProcessFanOut` runs every item here (inline children, and the Ray-free runner); the Ray fan-out
(actors/ray_runtime/map_on_ray.py) runs I/O children and sub-graphs with these same pieces inside the
executor actors, and CPU children as Ray tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from actors.job_loop.map_subgraph import GraphItemRun, Launch, execute_in_place
from engine.failures import error_info
from nodes.base import LogSink, NodeContext
from nodes.map import GraphChild, ItemOutcome, MapChild, MapItems, ProgressCallback

CHUNK_SECONDS = 0.05
CHUNK_ITEMS = 256

ItemJob = Callable[[], Awaitable[ItemOutcome]]


async def run_item(
    child: MapChild, config: dict[str, Any], ctx: NodeContext, index: int, launch: Launch = execute_in_place
) -> ItemOutcome:
    """One item (`ctx` is the item's): the child node with its rendered config, or the sub-graph with
    `config` as its templates' locals."""
    if isinstance(child, GraphChild):
        registry = ctx.services.registry
        return await GraphItemRun(child, config, ctx, index, registry, launch).run()
    try:
        result = await launch(child, child.parse_config(config, ctx.node_id), ctx)
    except Exception as exc:
        return ItemOutcome(index=index, error=error_info(exc))
    return ItemOutcome(index=index, output=result.output, usage=result.usage)


def item_jobs(items: MapItems, launch: Launch = execute_in_place) -> list[ItemJob]:
    """One job per item, each run with the item's own context and `launch`."""

    def job(index: int, config: dict[str, Any]) -> ItemJob:
        return lambda: run_item(items.child, config, items.parent.for_item(index), index, launch)

    return [job(index, config) for index, config in enumerate(items.configs, items.start_index)]


async def bounded(jobs: Sequence[ItemJob], limit: int, fail_fast: bool) -> AsyncIterator[ItemOutcome]:
    """Run at most `limit` jobs at once and yield outcomes as they finish; with `fail_fast`, the
    first failure cancels what is still running and ends the iteration.

    `limit` workers pull the next job as they finish one, so each item costs O(1) scheduling work
    (an `asyncio.wait` over every running task per completion would cost O(limit))."""
    pending = iter(jobs)
    finished: asyncio.Queue[ItemOutcome | None] = asyncio.Queue()

    async def worker() -> None:
        try:
            for job in pending:
                finished.put_nowait(await job())
        finally:
            finished.put_nowait(None)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(jobs)))]
    running = len(workers)
    try:
        while running:
            outcome = await finished.get()
            if outcome is None:
                running -= 1
                continue
            yield outcome
            if fail_fast and outcome.error is not None:
                return
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def chunked(outcomes: AsyncIterator[ItemOutcome]) -> AsyncIterator[list[ItemOutcome]]:
    """Group outcomes into chunks of up to CHUNK_ITEMS or CHUNK_SECONDS, so a remote stream carries
    a few dozen messages for a thousand items rather than a thousand."""
    chunk: list[ItemOutcome] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    async for outcome in outcomes:
        chunk.append(outcome)
        if len(chunk) >= CHUNK_ITEMS or loop.time() - started >= CHUNK_SECONDS or outcome.error is not None:
            yield chunk
            chunk, started = [], loop.time()
    if chunk:
        yield chunk


class Tally:
    """Counts outcomes and reports progress; collects them in input order at the end."""

    def __init__(self, total: int, on_progress: ProgressCallback) -> None:
        self.total, self.on_progress = total, on_progress
        self.outcomes: list[ItemOutcome] = []
        self.failed = 0

    async def add(self, outcomes: list[ItemOutcome], log: LogSink | None = None) -> None:
        """Count `outcomes`; logs they carry from afar are replayed into `log` (the job's)."""
        if log is not None:
            for outcome in outcomes:
                for level, message, data in outcome.logs:
                    log(level, message, {"item": outcome.index, **data})
        self.outcomes.extend(outcomes)
        self.failed += sum(1 for o in outcomes if o.error is not None)
        await self.on_progress(len(self.outcomes) - self.failed, self.failed, self.total)

    def in_order(self) -> list[ItemOutcome]:
        return sorted(self.outcomes, key=lambda outcome: outcome.index)


class InProcessFanOut:
    async def run(self, items: MapItems) -> list[ItemOutcome]:
        tally = Tally(len(items.configs), items.on_progress)
        async for chunk in chunked(bounded(item_jobs(items), items.max_concurrency, items.fail_fast)):
            await tally.add(chunk)
        return tally.in_order()
