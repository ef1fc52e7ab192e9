"""The switch node: routes to the target of the first case that matches; the other targets are skipped.

A case matches when its `equals` is the switch's `value` as JSON values (1 and 1.0 are equal; 1, true
and "1" are not) or when its `condition` holds. Cases are tried in order. When none matches, the switch
routes to `default`; without a default it fails, so a value nobody planned for is loud instead of
silently skipping every branch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.budget import evaluation_budget
from engine.conditions import check_condition_syntax, evaluate_condition
from engine.errors import ConditionError, NodeExecutionError, Problem, TemplateError
from engine.template_sandbox import json_type
from engine.templating import TemplateContext, render
from nodes.base import NodeContext, NodeResult, NodeType

MAX_CASES = 100
_SHOWN_VALUE_CHARS = 200
_CASE_FIELD = re.compile(r"^config\.cases\.(\d+)")


class SwitchCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    equals: Any = Field(default=None, description="Matches when the switch's `value` equals it.")
    condition: str | None = Field(
        default=None, min_length=1, description='Matches when it holds, such as "{{input.amount}} > 100".'
    )
    target: str = Field(min_length=1, description="The successor to run when the case matches.")

    @property
    def compares_value(self) -> bool:
        return "equals" in self.model_fields_set

    @model_validator(mode="after")
    def _one_test(self) -> SwitchCase:
        if self.compares_value == (self.condition is not None):
            has = "both" if self.compares_value else "neither"
            raise PydanticCustomError(
                "switch_case",
                "a case needs exactly one of `equals` (a value to compare with `value`) and `condition` "
                '(an expression such as "{{input.amount}} > 100"); this one has {has}',
                {"has": has},
            )
        return self

    @model_serializer(mode="wrap")
    def _written_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields the case was written with, so a dumped config parses back to the same cases."""
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set or key == "target"}


class SwitchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = Field(
        default=None,
        description=(
            "What the `equals` cases are compared with, usually a template such as "
            '"{{classify.output.category}}".'
        ),
    )
    cases: list[SwitchCase] = Field(
        min_length=1,
        max_length=MAX_CASES,
        description=(
            'Tried in order; the first that matches wins. Each is `{"equals": <any JSON>, "target": '
            '"<successor>"}` or `{"condition": "<expression>", "target": "<successor>"}`.'
        ),
    )
    default: str | None = Field(
        default=None,
        min_length=1,
        description="The successor to run when no case matches. Without it, no match fails the node.",
    )

    @model_validator(mode="after")
    def _equals_needs_value(self) -> SwitchConfig:
        comparing = [f"cases[{index}]" for index, case in enumerate(self.cases) if case.compares_value]
        if comparing and "value" not in self.model_fields_set:
            raise PydanticCustomError(
                "switch_value",
                "{cases} compare with `equals`, which needs `value`: what the cases are compared with",
                {"cases": ", ".join(comparing)},
            )
        return self

    @property
    def targets(self) -> frozenset[str]:
        named = {case.target for case in self.cases}
        if self.default is not None:
            named.add(self.default)
        return frozenset(named)


class SwitchNode(NodeType[SwitchConfig]):
    type_name = "switch"
    pure = True
    description = (
        "Runs the `target` of the first of its `cases` that matches (`equals` the `value`, or its "
        "`condition` holds), else `default`; the other targets are skipped. No match and no default fails."
    )
    config_model = SwitchConfig
    raw_fields = frozenset({"cases"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        problems = [
            Problem(problem.message, field=_CASE_FIELD.sub(r"config.cases[\1]", problem.field or "config"))
            for problem in super().validate_config(config)
        ]
        cases = config.get("cases")
        problems.extend(_templates_standing_for_cases(cases))
        if isinstance(cases, list):
            for index, case in enumerate(cases[:MAX_CASES]):
                condition = case.get("condition") if isinstance(case, dict) else None
                if isinstance(condition, str) and condition:
                    problems.extend(
                        Problem(message, field=f"config.cases[{index}].condition")
                        for message in check_condition_syntax(condition)
                    )
        return problems

    def routing_targets(self, config: dict[str, Any]) -> dict[str, str]:
        targets: dict[str, str] = {}
        cases = config.get("cases")
        if isinstance(cases, list):
            for index, case in enumerate(cases):
                if isinstance(case, dict) and isinstance(case.get("target"), str):
                    targets[f"cases[{index}].target"] = case["target"]
        if isinstance(config.get("default"), str):
            targets["default"] = config["default"]
        return targets

    def render_config(self, config: dict[str, Any], scope: TemplateContext, node_id: str) -> SwitchConfig:
        """`cases` is raw so that conditions are evaluated, never rendered into text; their `equals`
        values are rendered here, like any other template of the config."""
        with evaluation_budget():
            parsed = super().render_config(config, scope, node_id)
            try:
                values = render([case.equals for case in parsed.cases], scope)
            except TemplateError as exc:
                raise TemplateError(f"switch node '{node_id}', config.cases: {exc.message}") from None
        cases = [
            case.model_copy(update={"equals": value}) if case.compares_value else case
            for case, value in zip(parsed.cases, values, strict=True)
        ]
        return parsed.model_copy(update={"cases": cases})

    async def execute(self, config: SwitchConfig, ctx: NodeContext) -> NodeResult:
        with evaluation_budget():
            for index, case in enumerate(config.cases):
                if _matches(case, index, config.value, ctx.scope):
                    return _route(config, case.target, index)
        if config.default is None:
            raise NodeExecutionError(_no_match_message(config, ctx.node_id))
        return _route(config, config.default, "default")


def _matches(case: SwitchCase, index: int, value: Any, scope: TemplateContext) -> bool:
    if case.condition is None:
        return same_json(case.equals, value)
    try:
        return evaluate_condition(case.condition, scope)
    except ConditionError as exc:
        raise ConditionError(f"config.cases[{index}].condition: {exc.message}") from None


def _route(config: SwitchConfig, target: str, case: int | str) -> NodeResult:
    output = {"branch": target, "case": case, "value": config.value}
    return NodeResult(output=output, inactive_targets=config.targets - {target})


def _no_match_message(config: SwitchConfig, node_id: str) -> str:
    compared = ""
    if "value" in config.model_fields_set:
        shown = json.dumps(config.value, default=str)
        if len(shown) > _SHOWN_VALUE_CHARS:
            shown = shown[: _SHOWN_VALUE_CHARS - 3] + "..."
        compared = f" for the value {json_type(config.value)} {shown}"
    count = len(config.cases)
    return (
        f"switch node '{node_id}': none of its {count} case{'s' if count != 1 else ''} matched{compared} "
        "and it has no default; add a case for it or set `default`"
    )


def _templates_standing_for_cases(cases: Any) -> list[Problem]:
    """`cases` is never rendered as a whole: a template standing for the list or for one case would
    reach the node as text."""
    message = "cases are not rendered: write them out as a list of objects, not as a template"
    if isinstance(cases, str) and "{{" in cases:
        return [Problem(message, field="config.cases")]
    if not isinstance(cases, list):
        return []
    return [
        Problem(message, field=f"config.cases[{index}]")
        for index, case in enumerate(cases)
        if isinstance(case, str) and "{{" in case
    ]


def same_json(left: Any, right: Any) -> bool:
    """Equality of JSON values. Python's == makes 1 == True; here a boolean equals only a boolean,
    while numbers compare by value (1 == 1.0)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(same_json(left[key], right[key]) for key in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(same_json(a, b) for a, b in zip(left, right, strict=True))
    return json_type(left) == json_type(right) and left == right
