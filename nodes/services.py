"""What the runtime hands a node where it runs (`ctx.services`): exactly what node types use, no more.

Whoever runs a node builds its services (the job runner, an executor actor, a Ray task, a node test)
and says for each what it offers there; nothing is looked up globally or read from the environment, so a
node gets the same settings on every machine. A service a place does not offer is None, and the node
says what it cannot do without it (a map node outside a job) or does without (an LLM call unlimited).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from engine.records import JobRecord
from nodes.provider_limits import ProviderLimiter
from nodes.settings import NodeSettings

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver
    from pydantic import BaseModel

    from nodes.base import NodeContext, NodeResult, NodeType
    from nodes.map import FanOut
    from nodes.registry import NodeRegistry

TokenSink = Callable[[str], Awaitable[None]]
"""Takes each piece of text an LLM streams, as it arrives."""

ProgressSink = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Takes a running node's progress: (node id, counts)."""

NodeRunner = Callable[["NodeType[Any]", "BaseModel", "NodeContext"], Awaitable["NodeResult"]]
"""Runs one node (its config rendered) where its type runs: inline in place, I/O in an executor actor, CPU
as a Ray task; cancelling the awaiting coroutine stops the work."""


class ChildJobs(Protocol):
    """Starts child jobs of the job a node runs in (the workflow node, a map of workflow items): as the
    job's owner, under the job manager's admission, once per idempotency key; and cancels them."""

    async def start(
        self, workflow_id: str, version: int | None, input_data: dict[str, Any], node_id: str, key: str
    ) -> JobRecord:
        """The child job (an existing one when `key` started one before). NodeExecutionError when the
        workflow is not the owner's or the nesting is too deep."""

    async def cancel(self, job_id: str) -> None:
        """Cancel a child job (and its own children); nothing when it has ended already."""


@dataclass(frozen=True, kw_only=True)
class NodeServices:
    """Every field must be given: a place that forgets one fails when it builds the services, not when a
    node that needed it runs."""

    settings: NodeSettings
    """The `nodes` section of the service's settings, as the job's gateway read it."""
    registry: NodeRegistry
    """The node types of the service (built-ins and plugins): a map looks its child types up here."""
    llm_limiter: ProviderLimiter | None
    """The cluster-wide provider limiter, in the executor actors. None where no LLM node is run (the job
    actor's inline nodes, a CPU task): a provider call made there is not limited."""
    emit_token: TokenSink | None
    """Publishes streamed LLM text as the job's `llm_token` events; only for a node run on its own in an
    executor (None for map items)."""
    fan_out: FanOut | None
    """Runs a map node's items where their type runs; only in the job's own actor."""
    progress: ProgressSink | None
    """Reports a map node's item counts as `node_progress` events; only in the job's own actor."""
    dns_resolver: AbstractResolver | None
    """What the HTTP node resolves host names with (its address checks apply to the answers); None: the
    system's resolver."""
    child_jobs: ChildJobs | None
    """Starts child jobs (the workflow node); only in the job's own actor."""
    run_node: NodeRunner | None
    """Runs another node where its type runs (an agent's model turns and tool calls); only in the job's
    own actor."""
