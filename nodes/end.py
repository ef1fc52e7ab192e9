"""The end node: shapes the job's result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodes.base import NodeContext, NodeResult, NodeType


class EndConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: Any = Field(
        default=None,
        description="The job's result, from templates. Without it, the outputs of the nodes that lead here.",
    )


class EndNode(NodeType[EndConfig]):
    type_name = "end"
    pure = True
    description = "Shapes the job's result. A workflow without one returns the outputs of its last nodes."
    config_model = EndConfig

    async def execute(self, config: EndConfig, ctx: NodeContext) -> NodeResult:
        if config.output is not None:
            return NodeResult(output=config.output)
        return NodeResult(output={p: ctx.scope.nodes[p] for p in ctx.predecessors if p in ctx.scope.nodes})
