"""The transform node: renders a template of any JSON shape into its output."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodes.base import NodeContext, NodeResult, NodeType


class TransformConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: Any = Field(
        description="Any JSON value; its templates are rendered, exact ones keep their type."
    )


class TransformNode(NodeType[TransformConfig]):
    type_name = "transform"
    pure = True
    description = "Shapes data: renders `template` (any JSON) against the input and earlier nodes' outputs."
    config_model = TransformConfig

    async def execute(self, config: TransformConfig, ctx: NodeContext) -> NodeResult:
        return NodeResult(output=config.template)
