"""How a job hands a node's work to where it runs."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from nodes.base import NodeContext, NodeResult, NodeType


class NodeLauncher(Protocol):
    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        """Run one attempt of a node where its `execution` says; cancelling the awaiting coroutine
        must stop the work itself (remote task, coroutine, sandbox process)."""


class InProcessLauncher:
    """Runs every node in the calling process. For nodes that are inline anyway and for the
    `POST /nodes/{type}/test` path of pure node types; never for user code."""

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        return await node.execute(config, ctx)
