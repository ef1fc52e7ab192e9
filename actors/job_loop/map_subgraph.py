"""One item of a map's sub-graph (or one iteration of a loop's): a small workflow run in memory with the
job's own scheduling step.

Nothing here is checkpointed: an item is a unit of the map node, and a map that runs again (a crash, a
retry) runs its items again (a loop journals each finished iteration itself). Each node inside gets its
own id (`map[3].classify`), log lines tagged with it, and an idempotency key that includes the map's
attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from actors.job_loop.node_tasks import NodeTasks
from engine.ledger import JobLedger, terminal_with_output
from engine.records import ErrorInfo, JobStatus, utcnow
from engine.scheduler import Begin, Decision, JobState, SchedulerEvent
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult, NodeType
from nodes.map import GraphChild, ItemOutcome, sum_usage
from nodes.registry import NodeRegistry

Launch = Callable[[NodeType[Any], BaseModel, NodeContext], Awaitable[NodeResult]]
"""Runs one attempt of a node where it belongs (in place, or a CPU node as a Ray task)."""


async def execute_in_place(node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
    return await node.execute(config, ctx)


class GraphItemRun:
    """Drives one item through the sub-graph, its templates reading `local_values` (`item` and `index`, or
    `iteration`); `run` returns its outcome and never raises for a node's failure."""

    def __init__(
        self,
        graph: GraphChild,
        local_values: dict[str, Any],
        item_ctx: NodeContext,
        index: int,
        registry: NodeRegistry,
        launch: Launch,
    ) -> None:
        self.graph, self.item_ctx, self.index = graph, item_ctx, index
        self.registry, self.launch = registry, launch
        self.dag = graph.dag
        self.ledger = JobLedger(
            self.dag, JobState.initial(self.dag), item_ctx.job_id, item_ctx.workflow_id, utcnow
        )
        self.outputs: dict[str, Any] = {}
        self.locals = local_values
        self.finished: Decision | None = None
        self._inbox: asyncio.Queue[SchedulerEvent] = asyncio.Queue()
        self._nodes = NodeTasks(self.dag, self._execute, self._inbox.put_nowait, utcnow)

    @property
    def state(self) -> JobState:
        return self.ledger.state

    async def run(self) -> ItemOutcome:
        """Decisions are applied in memory only: an item is a unit of its map node, never checkpointed."""
        try:
            self._take(Begin(utcnow()))
            while not self.state.status.is_terminal:
                self._take(await self._inbox.get())
        finally:
            await self._nodes.cancel_all()
        return self._outcome()

    def _outcome(self) -> ItemOutcome:
        usage = sum_usage(node.usage for node in self.state.nodes.values())
        if self.state.status is JobStatus.COMPLETED:
            return ItemOutcome(index=self.index, output=self._result(), usage=usage)
        error = self.finished.error if self.finished else None
        return ItemOutcome(
            index=self.index,
            error=error or ErrorInfo(type="internal_error", message="sub-graph ended without a result"),
            usage=usage,
        )

    def _result(self) -> Any:
        """The `output` node's output; else as for a job (the end node's output, or the sinks' by id),
        except that a single sink gives its output itself."""
        output = self.graph.output
        if output is None and not self.dag.end_nodes and len(self.dag.sinks) == 1:
            output = self.dag.sinks[0]
        if output is not None:
            return self.outputs.get(output)
        return self.finished.result if self.finished else None

    def _take(self, event: SchedulerEvent) -> None:
        for decision in self.ledger.decide([event]):
            for node_id, node in decision.changes.items():
                if terminal_with_output(node):
                    self.outputs[node_id] = node.output
            if decision.status is not None and decision.status.is_terminal:
                self.finished = decision
            for action in decision.actions:
                self._nodes.perform(action)

    async def _execute(self, node_id: str, attempt: int) -> NodeResult:
        spec = self.dag.nodes[node_id]
        node = self.registry.get(spec.type)
        outer = self.graph.outer
        scope = TemplateContext(
            input=outer.input,
            nodes={**outer.nodes, **self.outputs},
            secrets=outer.secrets,
            locals=self.locals,
        )
        ctx = self.item_ctx.for_sub_node(node_id, attempt, scope, self.dag.predecessors[node_id])
        config = node.render_config(spec.config, scope, ctx.node_id)
        return await self.launch(node, config, ctx)
