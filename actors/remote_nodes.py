"""Node work that runs away from the job actor: in a shared async executor actor (I/O) or a Ray task (CPU).

Outcomes travel back as data, errors included, so their type and retryability survive the trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.fan_out import bounded, chunked, item_context, run_item
from engine.errors import NodeExecutionError
from engine.failures import error_info
from engine.records import ErrorInfo, LogLevel
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult
from nodes.map import ItemOutcome
from nodes.registry import default_registry
from nodes.settings import NodeSettings


@dataclass(frozen=True)
class RemoteCall:
    node_type: str
    config: dict[str, Any]
    job_id: str
    workflow_id: str
    node_id: str
    attempt: int
    predecessors: tuple[str, ...] = ()
    node_plugins: tuple[str, ...] = ()
    settings: NodeSettings = field(default_factory=lambda: NodeSettings(_env_file=None))


@dataclass
class RemoteOutcome:
    result: NodeResult | None = None
    error: ErrorInfo | None = None
    logs: list[tuple[LogLevel, str, dict[str, Any]]] = field(default_factory=list)


class RemoteNodeError(NodeExecutionError):
    """A node's failure as reported from where it ran, keeping its error type and retryability."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.code = info.type
        self.retryable = info.retryable


async def execute_here(call: RemoteCall, services: Mapping[str, Any] | None = None) -> RemoteOutcome:
    """Run one attempt in this process with the node's services: the shipped settings plus what the
    hosting process offers (`services`)."""
    outcome = RemoteOutcome()
    node = default_registry(call.node_plugins).get(call.node_type)
    ctx = NodeContext(
        job_id=call.job_id,
        workflow_id=call.workflow_id,
        node_id=call.node_id,
        attempt=call.attempt,
        scope=TemplateContext(),
        predecessors=call.predecessors,
        log=lambda level, message, data: outcome.logs.append((level, message, data)),
        services={"settings": call.settings, **(services or {})},
    )
    try:
        outcome.result = await node.execute(node.parse_config(call.config, call.node_id), ctx)
    except Exception as exc:
        outcome.error = error_info(exc)
    return outcome


@dataclass(frozen=True)
class RemoteBatch:
    """Many items of one map node, all of one child type, for one executor."""

    call: RemoteCall
    items: list[tuple[int, dict[str, Any]]]
    max_concurrency: int
    fail_fast: bool


async def execute_batch_here(
    batch: RemoteBatch, services: Mapping[str, Any] | None = None
) -> AsyncIterator[list[ItemOutcome]]:
    """Run a batch as coroutines under its concurrency bound, yielding outcomes in chunks as they finish."""
    call = batch.call
    child = default_registry(call.node_plugins).get(call.node_type)
    parent = NodeContext(
        job_id=call.job_id,
        workflow_id=call.workflow_id,
        node_id=call.node_id,
        attempt=call.attempt,
        scope=TemplateContext(),
        services={"settings": call.settings, **(services or {})},
    )
    jobs = [
        (lambda i=index, c=config: run_item(child, c, item_context(parent, i), i))
        for index, config in batch.items
    ]
    async for chunk in chunked(bounded(jobs, batch.max_concurrency, batch.fail_fast)):
        yield chunk


class NodeExecutor:
    """An async actor shared by many jobs: each I/O node attempt is one coroutine here."""

    async def execute(self, call: RemoteCall) -> RemoteOutcome:
        return await execute_here(call)

    async def execute_batch(self, batch: RemoteBatch) -> AsyncIterator[list[ItemOutcome]]:
        async for chunk in execute_batch_here(batch):
            yield chunk

    async def ping(self) -> bool:
        return True


def run_cpu_node(call: RemoteCall) -> RemoteOutcome:
    """The body of a Ray task for CPU nodes (user code): one attempt, in a worker process."""
    return asyncio.run(execute_here(call))
