"""The conditional node: routes to one of two successors; the branch not taken is skipped."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.conditions import check_condition_syntax, evaluate_condition
from engine.errors import ConditionError, Problem
from nodes.base import NodeContext, NodeResult, NodeType


class ConditionalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: str = Field(
        min_length=1,
        description='An expression such as "{{input.value}} > 10"; references become variables.',
    )
    true_edge: str = Field(description="The successor to run when the condition holds.")
    false_edge: str = Field(description="The successor to run when it does not.")


class ConditionalNode(NodeType[ConditionalConfig]):
    type_name = "conditional"
    pure = True
    description = "Evaluates `condition` and runs `true_edge` or `false_edge`; the other branch is skipped."
    config_model = ConditionalConfig
    raw_fields = frozenset({"condition"})
    routing_fields = ("true_edge", "false_edge")

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        problems = super().validate_config(config)
        condition = config.get("condition")
        if isinstance(condition, str) and condition:
            problems.extend(
                Problem(message, field="config.condition") for message in check_condition_syntax(condition)
            )
        return problems

    async def execute(self, config: ConditionalConfig, ctx: NodeContext) -> NodeResult:
        try:
            result = evaluate_condition(config.condition, ctx.scope)
        except ConditionError as exc:
            raise ConditionError(f"config.condition: {exc.message}") from None
        taken, not_taken = (
            (config.true_edge, config.false_edge) if result else (config.false_edge, config.true_edge)
        )
        inactive = frozenset() if taken == not_taken else frozenset({not_taken})
        return NodeResult(output={"result": result, "branch": taken}, inactive_targets=inactive)
