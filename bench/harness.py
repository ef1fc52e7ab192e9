"""What every workload needs: a service runtime on a fresh DATA_DIR, and small statistics."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psutil

from actors.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings
from engine.models import WorkflowDefinition
from nodes.settings import NodeSettings


@asynccontextmanager
async def service(
    node_settings: NodeSettings | None = None, **overrides: Any
) -> AsyncIterator[ServiceRuntime]:
    """A whole service runtime (embedded store and Redis, the local Ray instance) in a temporary DATA_DIR."""
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as data_dir:
        values = {
            "DATA_DIR": data_dir,
            "RAY_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "RAY_DASHBOARD": "false",
            "LOG_LEVEL": "WARNING",
        }
        values.update({key: str(value) for key, value in overrides.items()})
        runtime = await start_service_runtime(Settings(_env_file=None, **values), node_settings)
        try:
            yield runtime
        finally:
            await runtime.close()


async def create_workflow(runtime: ServiceRuntime, definition: dict[str, Any], owner: str = "bench") -> str:
    workflow = await runtime.store.create_workflow(owner, WorkflowDefinition.model_validate(definition))
    return workflow.id


def chain_definition(size: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "transform", "config": {"template": {"step": i}}} for i in range(size)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": f"chain{size}", "nodes": nodes, "edges": edges}


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class RssSampler:
    """Peak summed RSS of a process tree (the gateway and what it started: Ray, actors, Redis)."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.peak = 0
        self.baseline = 0
        self._task: asyncio.Task[None] | None = None

    def total(self) -> int:
        processes = [self.root, *self.root.children(recursive=True)]
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, await asyncio.to_thread(self.total))
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self.baseline = self.total()
        self._task = asyncio.ensure_future(self._sample())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
