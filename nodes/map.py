"""The map node: fan-out of one node, or of a sub-graph of nodes, over a list, with bounded
concurrency and a failure policy.

For one child node the map renders one config per item (`{{item}}`, `{{index}}`, plus the input and
earlier nodes' outputs) and hands them all at once to the runtime's fan-out service, which runs them
where the child type runs: I/O children as coroutines in executor actors in batches (never one Ray
call per item), CPU children as Ray tasks, inline children in place. A sub-graph (`graph`) runs once
per item as a small workflow of its own, through the same scheduling step as a job; it goes to the
executors whole, in batches, when any of its nodes waits on I/O or uses a core. Results come back in
input order. A `workflow` child makes each item a child job: the map then waits, holding nothing, while
its job starts the children max_concurrency at a time (nodes/map_children.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.budget import MAX_WORK, evaluation_budget
from engine.catalog import NodeCatalog
from engine.child_waits import ChildItem, ChildrenWait
from engine.dag import Dag
from engine.errors import InvalidWorkflowError, NodeExecutionError, Problem, WorkflowServiceError
from engine.models import WorkflowDefinition
from engine.records import ErrorInfo, LogLevel, WaitInfo, WaitKind, utcnow
from engine.templating import (
    INDEX_ROOT,
    INPUT_ROOT,
    ITEM_ROOT,
    MAP_ROOTS,
    SECRETS_ROOT,
    Reference,
    TemplateContext,
    check_template_syntax,
    references,
)
from engine.validation import DefinitionLimits, validate_workflow
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.workflow import WorkflowNode

if TYPE_CHECKING:
    from nodes.registry import NodeRegistry

MAX_ITEMS = 100_000
ITEM_RENDER_WORK = 16_384
"""One evaluation budget covers a map's item configs and what its sub-graph renders and evaluates where
the map runs: MAX_WORK plus this many units (about 16 µs) per item and sub-graph node. Plenty for a few
templates each, while a hostile config cannot spend MAX_WORK on each of 100,000 items on the job
actor's event loop. (Sub-graph items sent to executor actors have a budget per node there.)"""
SUBGRAPH_LIMITS = DefinitionLimits(max_nodes=100, max_edges=1_000, max_bytes=256 * 2**10)


_WAITING_CHILD = (
    "a {type} node pauses its job, which a map's items cannot (only a workflow node as the map's node can: "
    "each item then a child job); put it in the workflow before or after the map"
)


FAN_OUT_TYPES = frozenset({"map", "loop"})
"""Node types that run sub-work through the job's fan-out service, which only the job's own actor offers:
never inside a map's items or a sub-graph, which may run in an executor."""


@dataclass(frozen=True)
class SubGraphOwner:
    """What a node type that runs a `graph` (map, loop) tells its validation: its name, the locals its
    graph's templates read, and why a waiting node cannot be in it."""

    type_name: str
    local_roots: frozenset[str]
    waiting_message: str


MAP_GRAPH = SubGraphOwner("map", MAP_ROOTS, _WAITING_CHILD)


class FailurePolicy(StrEnum):
    FAIL_FAST = "fail_fast"  # the first failed item fails the node; the rest are cancelled
    COLLECT = "collect"  # every item runs; failures are listed in the output
    MIN_SUCCESS_RATIO = "min_success_ratio"  # every item runs; the node fails below the ratio


class ChildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, description="The node type to run once per item.")
    config: dict[str, Any] = Field(default_factory=dict, description="Its config, with {{item}}, {{index}}.")


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[dict[str, Any]] = Field(
        min_length=1,
        description="Nodes as in a workflow, run once per item (a map) or iteration (a loop); their "
        "templates read {{item}} and {{index}} (a map) or {{iteration}} (a loop), the input, workflow nodes "
        "that run before the node, and each other.",
    )
    edges: list[dict[str, Any]] = Field(default_factory=list, description="Edges between these nodes.")
    output: str | None = Field(
        default=None,
        description="The node whose output is the item's result (a loop's next state); by default the end "
        "node's output, else the only sink node's output, else the sink nodes' outputs by id.",
    )


class MapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Any = Field(description="The list to fan out over, usually a template like {{input.documents}}.")
    node: ChildSpec | None = Field(default=None, description="One node to run per item (or `graph`).")
    graph: GraphSpec | None = Field(default=None, description="A sub-graph to run per item (or `node`).")
    max_concurrency: int = Field(default=10, ge=1, le=10_000, description="Items running at the same time.")
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    min_success_ratio: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _items_is_a_list(self) -> MapConfig:
        if not isinstance(self.items, list | str):
            kind = type(self.items).__name__
            raise ValueError(f"items must be a list (or a template giving one), not {kind}")
        if (self.node is None) == (self.graph is None):
            raise ValueError("set exactly one of node (one node per item) and graph (a sub-graph per item)")
        return self


@dataclass(frozen=True)
class GraphChild:
    """A map's sub-graph ready to run per item: its definition and the values from outside it that its
    templates read (`outer`: the input, earlier workflow nodes' outputs, secrets), nothing more, since
    it may travel to an executor."""

    definition: WorkflowDefinition
    output: str | None
    outer: TemplateContext
    execution: Execution

    @cached_property
    def dag(self) -> Dag:
        return Dag.from_definition(self.definition)


MapChild = NodeType[Any] | GraphChild


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


@dataclass(frozen=True)
class MapItems:
    """One run of a map node's items, as its node hands them to the runtime's fan-out service."""

    child: MapChild
    configs: Sequence[dict[str, Any]]
    """One per item: the child's rendered config, or for a sub-graph what its templates read as locals
    (`{"item": ..., "index": ...}`; a loop's `{"iteration": ...}`)."""
    parent: NodeContext
    """The map node's context; each item's is derived from it (`parent.for_item(index)`)."""
    max_concurrency: int
    fail_fast: bool
    on_progress: ProgressCallback
    start_index: int = 0
    """The index of the first config (a loop hands each iteration over as one item with its own index)."""


class FanOut(Protocol):
    async def run(self, items: MapItems) -> list[ItemOutcome]:
        """Run `items.child` once per config; outcomes in input order. With `fail_fast`, stop at the first
        failure (the outcomes list then holds what finished)."""


class MapNode(NodeType[MapConfig]):
    type_name = "map"
    description = (
        "Runs a node, or a sub-graph of nodes, once per item of a list, max_concurrency at a time; "
        "results in input order."
    )
    config_model = MapConfig
    raw_fields = frozenset({"node", "graph"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        from nodes.registry import default_registry

        return self.validate_config_in(config, default_registry())

    def validate_config_in(self, config: dict[str, Any], catalog: NodeCatalog) -> list[Problem]:
        problems = super().validate_config(config)
        child, graph = config.get("node"), config.get("graph")
        if isinstance(child, dict) and isinstance(child.get("type"), str):
            problems.extend(self._child_problems(child["type"], child.get("config", {}), catalog))
        if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
            problems.extend(graph_problems(graph, catalog, MAP_GRAPH))
        return problems

    def _child_problems(self, child_type: str, config: Any, catalog: NodeCatalog) -> list[Problem]:
        if child_type not in catalog.known_types():
            return [Problem(f"unknown node type '{child_type}'", field="config.node.type")]
        if child_type in FAN_OUT_TYPES:
            return [Problem(f"a map node cannot map a {child_type} node", field="config.node.type")]
        if catalog.waits(child_type) and child_type != WorkflowNode.type_name:
            return [Problem(_WAITING_CHILD.format(type=child_type), field="config.node.type")]
        if not isinstance(config, dict):
            return []
        if catalog.routing_targets(child_type, config):
            return [
                Problem(
                    f"a {child_type} node routes to successors, which a map child has none of; "
                    "put it in a sub-graph (graph) instead",
                    field="config.node.type",
                )
            ]
        return [
            Problem(message, field=f"config.node.{field}")
            for field, message in catalog.config_problems(child_type, config)
        ]

    def templated_config(self, config: dict[str, Any], catalog: NodeCatalog) -> dict[str, Any]:
        """For a sub-graph, the templates it reads from outside itself stand in for it: validation then
        checks that those nodes exist and run before the map."""
        view = super().templated_config(config, catalog)
        graph = config.get("graph")
        if isinstance(graph, dict) and isinstance(graph.get("nodes"), list):
            view["graph"] = sorted(f"{{{{{ref.text}}}}}" for ref in outer_references(graph["nodes"], catalog))
        return view

    async def execute(self, config: MapConfig, ctx: NodeContext) -> NodeResult:
        items = config.items
        where = f"map node '{ctx.node_id}'"
        if not isinstance(items, list):
            raise NodeExecutionError(f"{where}: items must be a list, got {type(items).__name__}")
        if len(items) > MAX_ITEMS:
            raise NodeExecutionError(f"{where}: {len(items)} items, the limit is {MAX_ITEMS}")
        nodes_per_item = len(config.graph.nodes) if config.graph is not None else 1
        with evaluation_budget(MAX_WORK + ITEM_RENDER_WORK * nodes_per_item * len(items)):
            if config.node is not None and config.node.type == WorkflowNode.type_name:
                return self._children_wait(config, config.node, ctx, items)
            fan_out = ctx.services.fan_out
            if fan_out is None:
                raise NodeExecutionError(f"{where} runs only inside a job: nothing here runs its items")
            return await self._fan_out(config, ctx, items, fan_out)

    def _children_wait(
        self, config: MapConfig, node: ChildSpec, ctx: NodeContext, items: list[Any]
    ) -> NodeResult:
        """Items that are child jobs: the node waits, holding nothing, while the job starts them
        max_concurrency at a time (nodes/map_children.py), each with its item's idempotency key."""
        if ctx.services.child_jobs is None:
            raise NodeExecutionError(f"map node '{ctx.node_id}': workflow items run only within a job")
        child = ctx.services.registry.get(node.type)
        children = ChildrenWait(
            items=[
                ChildItem(
                    **self._item_config(child, node.config, ctx, index, item),
                    key=ctx.for_item(index).idempotency_key,
                )
                for index, item in enumerate(items)
            ],
            max_concurrency=config.max_concurrency,
            failure_policy=config.failure_policy.value,
            min_success_ratio=config.min_success_ratio,
        )
        wait = WaitInfo(kind=WaitKind.CHILDREN, since=utcnow(), settings=children.model_dump(mode="json"))
        return NodeResult(output=None, wait=wait)

    async def _fan_out(
        self, config: MapConfig, ctx: NodeContext, items: list[Any], fan_out: FanOut
    ) -> NodeResult:
        registry = ctx.services.registry
        child: MapChild
        if config.graph is not None:
            child = graph_child(config.graph, ctx.scope, registry)
            configs = [{ITEM_ROOT: item, INDEX_ROOT: index} for index, item in enumerate(items)]
        else:
            assert config.node is not None
            child = registry.get(config.node.type)
            configs = [
                self._item_config(child, config.node.config, ctx, index, item)
                for index, item in enumerate(items)
            ]
        progress = ctx.services.progress

        async def on_progress(succeeded: int, failed: int, total: int) -> None:
            if progress is not None:
                await progress(ctx.node_id, {"succeeded": succeeded, "failed": failed, "total": total})

        fail_fast = config.failure_policy is FailurePolicy.FAIL_FAST
        run = MapItems(child, configs, ctx, config.max_concurrency, fail_fast, on_progress)
        outcomes = await fan_out.run(run)
        return map_result(config.failure_policy, config.min_success_ratio, ctx.node_id, outcomes, len(items))

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


def map_result(
    policy: FailurePolicy, min_ratio: float, node_id: str, outcomes: Sequence[ItemOutcome], total: int
) -> NodeResult:
    """A map's output from its items' outcomes, results in input order; NodeExecutionError when the
    failure policy (`policy`, `min_ratio`) says the node failed."""
    failures = [o for o in outcomes if o.error is not None]
    succeeded = len(outcomes) - len(failures)
    if failures and policy is FailurePolicy.FAIL_FAST:
        first = failures[0]
        message = first.error.message if first.error else ""
        raise NodeExecutionError(f"map node '{node_id}': item {first.index} failed: {message}")
    ratio = succeeded / total if total else 1.0
    if policy is FailurePolicy.MIN_SUCCESS_RATIO and ratio < min_ratio:
        raise NodeExecutionError(
            f"map node '{node_id}': {succeeded} of {total} items succeeded ({ratio:.0%}), "
            f"below min_success_ratio {min_ratio:.0%}; first error: "
            f"item {failures[0].index}: {failures[0].error.message if failures[0].error else ''}"
        )
    results: list[Any] = [None] * total
    for outcome in outcomes:
        results[outcome.index] = outcome.output
    usage = sum_usage(outcome.usage for outcome in outcomes)
    output = {
        "results": results,
        "succeeded": succeeded,
        "failed": len(failures),
        "total": total,
        "errors": [{"index": o.index, "error": o.error.model_dump()} for o in failures if o.error],
    }
    return NodeResult(output=output, usage=usage)


def graph_problems(graph: dict[str, Any], catalog: NodeCatalog, owner: SubGraphOwner) -> list[Problem]:
    """A sub-graph checked as a workflow of its own (templates may also read the owner's locals and
    workflow nodes), each problem located under `config.graph`."""
    nodes = graph["nodes"]
    definition = {"name": f"{owner.type_name} sub-graph", "nodes": nodes, "edges": graph.get("edges", [])}
    try:
        validate_workflow(definition, catalog, SUBGRAPH_LIMITS, nested=True, local_roots=owner.local_roots)
        problems = []
    except InvalidWorkflowError as exc:
        problems = [_located(problem) for problem in exc.problems]
    ids = {node.get("id") for node in nodes if isinstance(node, dict)}
    for node in nodes:
        node_type = node.get("type") if isinstance(node, dict) else None
        if not isinstance(node_type, str):
            continue
        where = f"sub-graph node '{node.get('id')}': "
        if node_type in FAN_OUT_TYPES:
            message = f"a {node_type} cannot run inside a {owner.type_name}'s sub-graph"
        elif catalog.waits(node_type):
            message = owner.waiting_message.format(type=node_type)
        else:
            continue
        problems.append(Problem(where + message, field=f"config.graph.nodes.{node.get('id')}.type"))
    output = graph.get("output")
    if isinstance(output, str) and output not in ids:
        problems.append(
            Problem(f"output '{output}' is not a node of the sub-graph", field="config.graph.output")
        )
    return problems


def _located(problem: Problem) -> Problem:
    """A sub-graph's problem as one of the map node's: `config.graph.nodes.<id>.<field>`."""
    if problem.node_id is None:
        return Problem(problem.message, field=".".join(filter(None, ("config.graph", problem.field))))
    field = ".".join(filter(None, ("config.graph.nodes", problem.node_id, problem.field)))
    return Problem(f"sub-graph node '{problem.node_id}': {problem.message}", field=field)


def outer_references(nodes: list[Any], catalog: NodeCatalog) -> list[Reference]:
    """The references the sub-graph's templates make to anything outside it (not its locals)."""
    inner = {node.get("id") for node in nodes if isinstance(node, dict)}
    found: dict[Reference, None] = {}
    for node in nodes:
        if not (isinstance(node, dict) and node.get("type") in catalog.known_types()):
            continue
        config = node.get("config")
        view = catalog.templated_config(node["type"], config if isinstance(config, dict) else {})
        if check_template_syntax(view):
            continue
        for reference in references(view):
            if reference.root in (INPUT_ROOT, SECRETS_ROOT) or (
                reference.node_id is not None and reference.node_id not in inner
            ):
                found[reference] = None
    return list(found)


def graph_child(graph: GraphSpec, scope: TemplateContext, registry: NodeRegistry) -> GraphChild:
    definition = WorkflowDefinition.model_validate(
        {"name": "map sub-graph", "nodes": graph.nodes, "edges": graph.edges}
    )
    outer = outer_references(graph.nodes, registry)
    read_nodes = {ref.root for ref in outer if ref.node_id is not None}
    read_secrets = {str(ref.path[0]) for ref in outer if ref.root == SECRETS_ROOT}
    outer_scope = TemplateContext(
        input=scope.input if any(ref.root == INPUT_ROOT for ref in outer) else {},
        nodes={node_id: scope.nodes[node_id] for node_id in read_nodes if node_id in scope.nodes},
        secrets={name: scope.secrets[name] for name in read_secrets if name in scope.secrets},
    )
    # Inline when every node is; otherwise the sub-graph goes to the executors whole, and its CPU
    # nodes become Ray tasks from there.
    kinds = {registry.get(node.type).execution for node in definition.nodes}
    execution = Execution.INLINE if kinds == {Execution.INLINE} else Execution.IO
    return GraphChild(definition, graph.output, outer_scope, execution)


def sum_usage(usages: Iterable[dict[str, int] | None]) -> dict[str, int] | None:
    """Token counts added up key by key; None when there are none."""
    totals: dict[str, int] = {}
    for usage in usages:
        for key, value in (usage or {}).items():
            totals[key] = totals.get(key, 0) + value
    return totals or None
