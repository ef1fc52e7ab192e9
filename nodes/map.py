"""The map node: fan-out of one node over a list, with bounded concurrency and a failure policy.

The map node renders one config per item (`{{item}}`, `{{index}}`, plus the input and earlier
nodes' outputs) and hands them all at once to the runtime's fan-out service, which runs them where
the child type runs: I/O children as coroutines in executor actors in batches (never one Ray call
per item), CPU children as Ray tasks, inline children in place. Results come back in input order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import NodeExecutionError, Problem, WorkflowServiceError
from engine.records import ErrorInfo, LogLevel
from engine.templating import INDEX_ROOT, ITEM_ROOT, TemplateContext
from nodes.base import NodeContext, NodeResult, NodeType

MAX_ITEMS = 100_000


class FailurePolicy(StrEnum):
    FAIL_FAST = "fail_fast"  # the first failed item fails the node; the rest are cancelled
    COLLECT = "collect"  # every item runs; failures are listed in the output
    MIN_SUCCESS_RATIO = "min_success_ratio"  # every item runs; the node fails below the ratio


class ChildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, description="The node type to run once per item.")
    config: dict[str, Any] = Field(default_factory=dict, description="Its config, with {{item}}, {{index}}.")


class MapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Any = Field(description="The list to fan out over, usually a template like {{input.documents}}.")
    node: ChildSpec
    max_concurrency: int = Field(default=10, ge=1, le=10_000, description="Items running at the same time.")
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    min_success_ratio: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _items_is_a_list(self) -> MapConfig:
        if not isinstance(self.items, list | str):
            kind = type(self.items).__name__
            raise ValueError(f"items must be a list (or a template giving one), not {kind}")
        return self


@dataclass(frozen=True)
class ItemOutcome:
    index: int
    output: Any = None
    error: ErrorInfo | None = None
    usage: dict[str, int] | None = None
    logs: tuple[tuple[LogLevel, str, dict[str, Any]], ...] = ()
    """What the item logged where it ran, when that was away from the job (replayed into the job's log)."""


ProgressCallback = Callable[[int, int, int], Awaitable[None]]
"""(succeeded, failed, total) so far."""


class FanOut(Protocol):
    async def run(
        self,
        child: NodeType[Any],
        configs: Sequence[dict[str, Any]],
        parent: NodeContext,
        max_concurrency: int,
        fail_fast: bool,
        on_progress: ProgressCallback,
    ) -> list[ItemOutcome]:
        """Run `child` once per config; outcomes in input order. With `fail_fast`, stop at the first
        failure (the outcomes list then holds what finished)."""


class MapNode(NodeType[MapConfig]):
    type_name = "map"
    description = "Runs a node once per item of a list, max_concurrency at a time; results in input order."
    config_model = MapConfig
    raw_fields = frozenset({"node"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        problems = super().validate_config(config)
        child = config.get("node")
        if isinstance(child, dict) and isinstance(child.get("type"), str):
            from nodes.registry import default_registry

            registry = default_registry()
            if child["type"] not in registry.known_types():
                problems.append(Problem(f"unknown node type '{child['type']}'", field="config.node.type"))
            elif child["type"] == self.type_name:
                problems.append(Problem("a map node cannot map another map node", field="config.node.type"))
            else:
                child_config = child.get("config", {})
                problems.extend(
                    Problem(problem.message, field=f"config.node.{problem.field}")
                    for problem in registry.get(child["type"]).validate_config(child_config)
                )
        return problems

    async def execute(self, config: MapConfig, ctx: NodeContext) -> NodeResult:
        from nodes.registry import default_registry

        items = config.items
        where = f"map node '{ctx.node_id}'"
        if not isinstance(items, list):
            raise NodeExecutionError(f"{where}: items must be a list, got {type(items).__name__}")
        if len(items) > MAX_ITEMS:
            raise NodeExecutionError(f"{where}: {len(items)} items, the limit is {MAX_ITEMS}")
        registry = ctx.services.get("registry") or default_registry()
        child = registry.get(config.node.type)
        configs = [
            self._item_config(child, config.node.config, ctx, index, item) for index, item in enumerate(items)
        ]
        fan_out: FanOut = ctx.services["fan_out"]
        progress = ctx.services.get("progress")

        async def on_progress(succeeded: int, failed: int, total: int) -> None:
            if progress is not None:
                await progress(ctx.node_id, {"succeeded": succeeded, "failed": failed, "total": total})

        fail_fast = config.failure_policy is FailurePolicy.FAIL_FAST
        outcomes = await fan_out.run(child, configs, ctx, config.max_concurrency, fail_fast, on_progress)
        return self._result(config, ctx, outcomes, len(items))

    def _item_config(
        self, child: NodeType[Any], config: dict[str, Any], ctx: NodeContext, index: int, item: Any
    ) -> dict[str, Any]:
        scope = TemplateContext(
            input=ctx.scope.input,
            nodes=ctx.scope.nodes,
            secrets=ctx.scope.secrets,
            locals={ITEM_ROOT: item, INDEX_ROOT: index},
        )
        try:
            return child.render_config(config, scope, f"{ctx.node_id}[{index}]").model_dump(mode="json")
        except WorkflowServiceError as exc:
            raise NodeExecutionError(f"map node '{ctx.node_id}', item {index}: {exc.message}") from None

    def _result(
        self, config: MapConfig, ctx: NodeContext, outcomes: list[ItemOutcome], total: int
    ) -> NodeResult:
        failures = [o for o in outcomes if o.error is not None]
        succeeded = len(outcomes) - len(failures)
        if failures and config.failure_policy is FailurePolicy.FAIL_FAST:
            first = failures[0]
            message = first.error.message if first.error else ""
            raise NodeExecutionError(f"map node '{ctx.node_id}': item {first.index} failed: {message}")
        ratio = succeeded / total if total else 1.0
        if config.failure_policy is FailurePolicy.MIN_SUCCESS_RATIO and ratio < config.min_success_ratio:
            raise NodeExecutionError(
                f"map node '{ctx.node_id}': {succeeded} of {total} items succeeded ({ratio:.0%}), "
                f"below min_success_ratio {config.min_success_ratio:.0%}; first error: "
                f"item {failures[0].index}: {failures[0].error.message if failures[0].error else ''}"
            )
        results: list[Any] = [None] * total
        for outcome in outcomes:
            results[outcome.index] = outcome.output
        usage = _sum_usage(outcomes)
        output = {
            "results": results,
            "succeeded": succeeded,
            "failed": len(failures),
            "total": total,
            "errors": [{"index": o.index, "error": o.error.model_dump()} for o in failures if o.error],
        }
        return NodeResult(output=output, usage=usage)


def _sum_usage(outcomes: list[ItemOutcome]) -> dict[str, int] | None:
    totals: dict[str, int] = {}
    for outcome in outcomes:
        for key, value in (outcome.usage or {}).items():
            totals[key] = totals.get(key, 0) + value
    return totals or None
