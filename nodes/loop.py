"""The loop node: a bounded loop that keeps the workflow a DAG.

The node runs its `graph` (a sub-graph as a map's `graph` is: the same format, validation and places to
run) once per iteration, each handed to the runtime's fan-out service as one item, so its nodes run where
their types run. Iteration `i`'s templates read `{{iteration.index}}`, `{{iteration.state}}` (the
initial `state`, then the previous iteration's output) and `{{iteration.output}}` (the latest finished
iteration's output: null in the first). After each iteration `until` (a condition, as an edge's) is
evaluated with `{{iteration.output}}` now that iteration's output; the loop stops when it holds, or after
`max_iterations`. What to do then is the decision of `next_step`, a pure function of what finished.

Each finished iteration is a durable step of the node's attempt (`ctx.steps`, nodes/steps.py), in the
job's checkpoint before the next one starts, with its `loop_iteration` event: the same attempt run again
after a crash restores them and goes on at the iteration that was running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.budget import MAX_WORK, evaluation_budget
from engine.catalog import NodeCatalog
from engine.conditions import check_condition_syntax, condition_references, evaluate_condition
from engine.errors import ConditionError, NodeExecutionError, Problem
from engine.records import EventType
from engine.templating import ITERATION_ROOT, LOOP_ROOTS, TemplateContext
from nodes.base import NodeContext, NodeResult, NodeType
from nodes.map import (
    ITEM_RENDER_WORK,
    FanOut,
    GraphChild,
    GraphSpec,
    MapItems,
    SubGraphOwner,
    graph_child,
    graph_problems,
    outer_references,
    sum_usage,
)
from nodes.steps import StepEvent, StepJournal

MAX_ITERATIONS = 1000
KEPT_OUTPUTS = 100
"""How many iterations' outputs the node's output keeps (the latest ones), so a long loop's output and
checkpoint stay bounded: iteration `i` is the attempt's durable step `iteration.<i % KEPT_OUTPUTS>`, each
replacing the one 100 iterations before it."""

LOOP_GRAPH = SubGraphOwner(
    "loop",
    LOOP_ROOTS,
    "a {type} node pauses its job, which a loop's iterations cannot; put it in the workflow before or "
    "after the loop",
)


class OnMaxIterations(StrEnum):
    FAIL = "fail"  # max_iterations ran and `until` never held: node_error
    RETURN_LAST = "return_last"  # ... the node completes with the last state, stopped_by max_iterations


class StoppedBy(StrEnum):
    UNTIL = "until"
    MAX_ITERATIONS = "max_iterations"


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph: GraphSpec = Field(
        description="The sub-graph run once per iteration, as a map's graph; its templates read "
        "{{iteration.index}}, {{iteration.state}} and {{iteration.output}} (the previous iteration's "
        "output). Its output becomes the next state."
    )
    max_iterations: int = Field(default=10, ge=1, le=MAX_ITERATIONS, description="Iterations at most.")
    until: str | None = Field(
        default=None,
        min_length=1,
        description="A condition evaluated after each iteration, {{iteration.output}} being its output: "
        "the loop stops when it holds. Without it the loop runs max_iterations times.",
    )
    state: Any = Field(default_factory=dict, description="The first iteration's {{iteration.state}}.")
    on_max_iterations: OnMaxIterations = Field(
        default=OnMaxIterations.FAIL,
        description="When max_iterations ran and until never held: fail the node, or return the last state.",
    )


@dataclass(frozen=True)
class Iteration:
    """One finished iteration, as the loop journals it: its output, whether `until` held after it, and
    the token usage of the loop up to and with it."""

    index: int
    output: Any
    until_held: bool
    usage: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "output": self.output,
            "until_held": self.until_held,
            "usage": self.usage,
        }

    def event(self) -> StepEvent:
        """The `loop_iteration` event published with its step."""
        return EventType.LOOP_ITERATION, {"index": self.index, "until_held": self.until_held}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Iteration:
        return cls(value["index"], value["output"], value["until_held"], value.get("usage"))


@dataclass(frozen=True)
class RunIteration:
    index: int
    locals: dict[str, Any]
    """What the iteration's templates read: `{"iteration": {"index", "state", "output"}}`."""


@dataclass(frozen=True)
class Finish:
    output: dict[str, Any]


def next_step(config: LoopConfig, finished: Sequence[Iteration]) -> RunIteration | Finish:
    """What the loop does after `finished` (the latest iterations, at most KEPT_OUTPUTS, in order): run
    the next iteration, or finish with the node's output; NodeExecutionError when max_iterations ran
    without `until` holding and the node should fail."""
    last = finished[-1] if finished else None
    if last is not None and last.until_held:
        return Finish(loop_output(config.state, finished, StoppedBy.UNTIL))
    index = last.index + 1 if last is not None else 0
    if index >= config.max_iterations:
        if config.until is not None and config.on_max_iterations is OnMaxIterations.FAIL:
            raise NodeExecutionError(
                f"until did not hold after max_iterations ({config.max_iterations}) iterations; "
                "set on_max_iterations to return_last to complete with the last state"
            )
        return Finish(loop_output(config.state, finished, StoppedBy.MAX_ITERATIONS))
    state = last.output if last is not None else config.state
    output = last.output if last is not None else None
    return RunIteration(index, {ITERATION_ROOT: {"index": index, "state": state, "output": output}})


def loop_output(initial: Any, finished: Sequence[Iteration], stopped_by: StoppedBy) -> dict[str, Any]:
    """`iterations` run, the final `state`, the latest KEPT_OUTPUTS `outputs` (the first of them is iteration
    `iterations - len(outputs)`), and why the loop stopped."""
    return {
        "iterations": finished[-1].index + 1 if finished else 0,
        "state": finished[-1].output if finished else initial,
        "outputs": [iteration.output for iteration in finished[-KEPT_OUTPUTS:]],
        "stopped_by": stopped_by.value,
    }


def until_holds(until: str | None, scope: TemplateContext, run: RunIteration, output: Any) -> bool:
    """Whether `until` holds after iteration `run` gave `output`; False without a condition."""
    if until is None:
        return False
    iteration = {**run.locals[ITERATION_ROOT], "output": output}
    ctx = TemplateContext(
        input=scope.input, nodes=scope.nodes, secrets=scope.secrets, locals={ITERATION_ROOT: iteration}
    )
    try:
        return evaluate_condition(until, ctx)
    except ConditionError as exc:
        raise ConditionError(f"config.until: {exc.message}") from None


def step_key(index: int) -> str:
    return f"iteration.{index % KEPT_OUTPUTS}"


def restored(steps: StepJournal) -> list[Iteration]:
    """The iterations an earlier run of this attempt checkpointed (the latest KEPT_OUTPUTS), in order."""
    found = (steps.get(step_key(slot)) for slot in range(KEPT_OUTPUTS))
    return sorted((Iteration.from_json(value) for value in found if value is not None), key=lambda i: i.index)


async def _no_progress(succeeded: int, failed: int, total: int) -> None:
    """A loop's iteration is one item: no `node_progress` counts (the loop publishes `loop_iteration`)."""


class LoopNode(NodeType[LoopConfig]):
    type_name = "loop"
    description = (
        "Runs a sub-graph once per iteration, its output the next iteration's state, until a condition "
        "holds or max_iterations ran; each finished iteration is checkpointed."
    )
    config_model = LoopConfig
    raw_fields = frozenset({"graph", "until"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        from nodes.registry import default_registry

        return self.validate_config_in(config, default_registry())

    def validate_config_in(self, config: dict[str, Any], catalog: NodeCatalog) -> list[Problem]:
        problems = super().validate_config(config)
        graph, until = config.get("graph"), config.get("until")
        if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
            problems.extend(graph_problems(graph, catalog, LOOP_GRAPH))
        if isinstance(until, str) and until:
            problems.extend(
                Problem(message, field="config.until") for message in check_condition_syntax(until)
            )
        return problems

    def templated_config(self, config: dict[str, Any], catalog: NodeCatalog) -> dict[str, Any]:
        """The templates the graph and `until` read from outside the loop stand in for them: validation
        then checks that those nodes exist and run before the loop."""
        view = super().templated_config(config, catalog)
        graph, until = config.get("graph"), config.get("until")
        if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
            view["graph"] = sorted(f"{{{{{ref.text}}}}}" for ref in outer_references(graph["nodes"], catalog))
        if isinstance(until, str):
            view["until"] = sorted(
                f"{{{{{ref.text}}}}}" for ref in condition_references(until) if ref.root not in LOOP_ROOTS
            )
        return view

    async def execute(self, config: LoopConfig, ctx: NodeContext) -> NodeResult:
        fan_out = ctx.services.fan_out
        if fan_out is None:
            raise NodeExecutionError(
                f"loop node '{ctx.node_id}' runs only inside a job: nothing here runs it"
            )
        child = graph_child(config.graph, ctx.scope, ctx.services.registry)
        finished = restored(ctx.steps)
        work = MAX_WORK + ITEM_RENDER_WORK * (len(config.graph.nodes) + 1) * config.max_iterations
        with evaluation_budget(work):
            while isinstance(step := self._next(config, finished, ctx), RunIteration):
                iteration = await self._iteration(config, child, step, ctx, fan_out, finished)
                await ctx.steps.record(step_key(iteration.index), iteration.to_json(), iteration.event())
                finished = [*finished[1 - KEPT_OUTPUTS :], iteration]
        return NodeResult(output=step.output, usage=finished[-1].usage if finished else None)

    def _next(
        self, config: LoopConfig, finished: Sequence[Iteration], ctx: NodeContext
    ) -> RunIteration | Finish:
        try:
            return next_step(config, finished)
        except NodeExecutionError as exc:
            raise NodeExecutionError(f"loop node '{ctx.node_id}': {exc.message}") from None

    async def _iteration(
        self,
        config: LoopConfig,
        child: GraphChild,
        step: RunIteration,
        ctx: NodeContext,
        fan_out: FanOut,
        finished: Sequence[Iteration],
    ) -> Iteration:
        items = MapItems(child, [step.locals], ctx, 1, True, _no_progress, step.index)
        (outcome,) = await fan_out.run(items)
        if outcome.error is not None:
            raise NodeExecutionError(
                f"loop node '{ctx.node_id}': iteration {step.index} failed: {outcome.error.message}"
            )
        held = until_holds(config.until, ctx.scope, step, outcome.output)
        usage = sum_usage([finished[-1].usage if finished else None, outcome.usage])
        return Iteration(step.index, outcome.output, held, usage)
