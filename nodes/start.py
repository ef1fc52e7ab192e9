"""The start node: exposes the job's input as its output."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.base import NodeContext, NodeResult, NodeType


class StartConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartNode(NodeType[StartConfig]):
    type_name = "start"
    pure = True
    description = "Entry point of a workflow: its output is the job's input."
    config_model = StartConfig

    async def execute(self, config: StartConfig, ctx: NodeContext) -> NodeResult:
        job_input: dict[str, Any] = dict(ctx.scope.input)
        return NodeResult(output=job_input)
