"""What every node type is: a small class over a pydantic config model.

A node type implements the platform's documented methods `execute()`, `validate_config()` and
`get_schema()`. It knows nothing of tenants, routes or databases: whatever it needs arrives in
the `NodeContext` it is executed with, its runtime services typed (nodes/services.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from engine.budget import evaluation_budget
from engine.catalog import NodeCatalog
from engine.config_check import model_problems
from engine.errors import NodeExecutionError, Problem, TemplateError
from engine.records import LogLevel, WaitInfo
from engine.templating import TemplateContext, render
from nodes.services import NodeServices
from nodes.steps import StepJournal


class Execution(StrEnum):
    """Where a node's work runs."""

    INLINE = "inline"  # inside the job actor: control flow and pure data shaping, microseconds
    IO = "io"  # as a coroutine in a shared async executor actor: LLM and HTTP calls that wait
    CPU = "cpu"  # as a Ray task: user code and other work that uses a core


LogSink = Callable[[LogLevel, str, dict[str, Any]], None]


@dataclass(frozen=True)
class NodeContext:
    """Where one attempt of a node runs: its job, node and attempt, what its templates read (`scope`),
    the runtime's services and the job's log. Contexts of a map's items and of their sub-graph's nodes
    are derived from the map node's (`for_item`, `for_sub_node`), never built by hand."""

    job_id: str
    workflow_id: str
    node_id: str
    attempt: int
    scope: TemplateContext
    services: NodeServices
    log: LogSink
    """Writes a line to the job's logs: (level, message, data); secrets are masked where it is stored."""
    predecessors: tuple[str, ...] = ()
    outer_attempts: tuple[int, ...] = ()
    """For a node inside a map's sub-graph: the map node's attempt, so a retried map gets new keys."""
    steps: StepJournal = field(default_factory=StepJournal)
    """The attempt's durable steps (nodes/steps.py): durable where the job's own actor runs the node."""
    step_path: tuple[str, ...] = ()
    """For work one step of a node does (an agent's tool call): the step, so its key is the step's."""

    @property
    def own_signal(self) -> str:
        """The signal that decides this attempt's own wait (an approval): the node's id, followed by the
        step for a step's work (`agent.2.0`: the agent's turn 2, call 0)."""
        return ".".join((self.node_id, *self.step_path))

    @property
    def idempotency_key(self) -> str:
        """The same for every run of one attempt, also when it runs again after a crash; a step's work
        (`for_step`) gets the attempt's key followed by its step: `job:node:attempt:step`."""
        attempts = ".".join(str(attempt) for attempt in (*self.outer_attempts, self.attempt))
        return ":".join((self.job_id, self.node_id, attempts, *self.step_path))

    def for_item(self, index: int) -> NodeContext:
        """Item `index` of this map node: node id `map[index]`, so its idempotency key is per item, and
        no scope, since its config is rendered already."""
        return replace(
            self,
            node_id=f"{self.node_id}[{index}]",
            scope=TemplateContext(),
            predecessors=(),
            steps=StepJournal(),
        )

    def for_step(self, *step: str) -> NodeContext:
        """The context of work that step `step` of this attempt runs as a node of its own (an agent's tool
        call): the same node and attempt, the idempotency key followed by the step's parts, no scope and
        a journal of its own."""
        return replace(
            self,
            scope=TemplateContext(),
            steps=StepJournal(),
            step_path=(*self.step_path, *step),
        )

    def for_sub_node(
        self, node_id: str, attempt: int, scope: TemplateContext, predecessors: tuple[str, ...]
    ) -> NodeContext:
        """Node `node_id` of this map item's sub-graph: node id `map[index].node_id`, log lines tagged
        with `sub_node`, and an idempotency key that includes the map's attempt."""
        item_log = self.log

        def log(level: LogLevel, message: str, data: dict[str, Any]) -> None:
            item_log(level, message, {"sub_node": node_id, **data})

        return NodeContext(
            job_id=self.job_id,
            workflow_id=self.workflow_id,
            node_id=f"{self.node_id}.{node_id}",
            attempt=attempt,
            scope=scope,
            services=self.services,
            log=log,
            predecessors=predecessors,
            outer_attempts=(*self.outer_attempts, self.attempt),
        )


@dataclass(frozen=True)
class NodeResult:
    output: Any
    inactive_targets: frozenset[str] = frozenset()
    usage: dict[str, int] | None = None
    wait: WaitInfo | None = None
    """Set by a node that waits (approval, wait) instead of finishing: the job keeps it as the node's
    wait, and the node type's `finish_wait` decides its outcome when a signal or its deadline comes."""
    resume_steps: dict[str, Any] | None = None
    """Set by the `finish_wait` of a node whose attempt goes on after its wait (an agent whose tool call
    waited): the durable steps the wait's outcome adds; the same attempt then runs again and replays them."""


ConfigT = TypeVar("ConfigT", bound=BaseModel)


class NodeType(ABC, Generic[ConfigT]):
    type_name: ClassVar[str]
    description: ClassVar[str]
    config_model: type[ConfigT]
    execution: ClassVar[Execution] = Execution.INLINE
    raw_fields: ClassVar[frozenset[str]] = frozenset()
    """Config fields rendered by the node itself rather than before it runs (conditions)."""
    literal_fields: ClassVar[frozenset[str]] = frozenset()
    """Raw fields that hold no templates at all (user code): never rendered, never template-checked."""
    routing_fields: ClassVar[tuple[str, ...]] = ()
    """Config fields that name a direct successor to route to."""
    waits: ClassVar[bool] = False
    """Whether `execute` starts a wait (NodeResult.wait) instead of finishing (nodes/waiting.py)."""
    pure: ClassVar[bool] = False
    """Whether the node's result is a function of its rendered config and its inputs alone (no I/O, no
    clock, no randomness): computed again after a crash, it comes out the same and does nothing twice. So
    it needs no commit of its own: in a job it ends within the commit that starts it (the job writer's
    fold), and as an agent's tool its step waits for the next commit. Set on start, end, transform,
    conditional and switch."""

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        """Problems with a config as written in a definition; templates stand for any value."""
        return [Problem(message, field=field) for field, message in model_problems(self.config_model, config)]

    def get_schema(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "description": self.description,
            "execution": self.execution.value,
            "config_schema": self.config_model.model_json_schema(),
        }

    def parse_config(self, rendered: dict[str, Any], node_id: str) -> ConfigT:
        """The config after its templates were rendered, checked again now that values are known."""
        try:
            return self.config_model.model_validate(rendered)
        except ValidationError as exc:
            details = "; ".join(
                f"config.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise NodeExecutionError(
                f"node '{node_id}' has an invalid config after rendering: {details}"
            ) from None

    def render_config(self, config: dict[str, Any], scope: TemplateContext, node_id: str) -> ConfigT:
        """Render the config's templates against `scope` (all but `raw_fields`) and check the result.
        All of them share one evaluation budget (or the one already open); an error names the node and
        the field."""
        raw = {key: value for key, value in config.items() if key in self.raw_fields}
        templated = {key: value for key, value in config.items() if key not in self.raw_fields}
        with evaluation_budget():
            try:
                rendered = render(templated, scope, where="config")
            except TemplateError as exc:
                raise TemplateError(f"node '{node_id}' {exc.message}") from None
        return self.parse_config({**rendered, **raw}, node_id)

    def validate_config_in(self, config: dict[str, Any], catalog: NodeCatalog) -> list[Problem]:
        """`validate_config` within a workflow validated against `catalog`: node types whose config holds
        other nodes (map) check those against the same node types."""
        return self.validate_config(config)

    def templated_config(self, config: dict[str, Any], catalog: NodeCatalog) -> dict[str, Any]:
        """What of a config validation checks as the templates this node reads from the workflow."""
        return {key: value for key, value in config.items() if key not in self.literal_fields}

    def routing_targets(self, config: dict[str, Any]) -> dict[str, str]:
        return {name: config[name] for name in self.routing_fields if isinstance(config.get(name), str)}

    @abstractmethod
    async def execute(self, config: ConfigT, ctx: NodeContext) -> NodeResult: ...
