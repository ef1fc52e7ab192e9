"""How a job hands a node's work to where it runs."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from actors.job_loop.map_items import InProcessFanOut
from nodes.base import NodeContext, NodeResult, NodeType
from nodes.map import FanOut


class NodeLauncher(Protocol):
    fan_out: FanOut

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        """Run one attempt of a node where its `execution` says; cancelling the awaiting coroutine
        must stop the work itself (remote task, coroutine, sandbox process)."""


class InProcessLauncher:
    """Runs every node in the calling process: the runner's tests and tools. User code is safe here
    too, since the code node itself runs it in the sandbox, but it takes no core of its own."""

    def __init__(self) -> None:
        self.fan_out: FanOut = InProcessFanOut()

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        return await node.execute(config, ctx)
