"""A validated workflow compiled into the adjacency the scheduler walks."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.models import NodeSpec, OnError, WorkflowDefinition

END_NODE_TYPE = "end"


@dataclass(frozen=True)
class Dag:
    nodes: Mapping[str, NodeSpec]
    successors: Mapping[str, tuple[str, ...]]
    predecessors: Mapping[str, tuple[str, ...]]
    sinks: tuple[str, ...]
    end_nodes: tuple[str, ...] = field(default=())

    @classmethod
    def from_definition(cls, definition: WorkflowDefinition) -> Dag:
        """Build the adjacency. Assumes the definition passed validation (known ids, no cycles)."""
        nodes = {node.id: node for node in definition.nodes}
        successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        predecessors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        for edge in definition.edges:
            if edge.target not in successors[edge.source]:
                successors[edge.source].append(edge.target)
                predecessors[edge.target].append(edge.source)
        return cls(
            nodes=nodes,
            successors={node_id: tuple(targets) for node_id, targets in successors.items()},
            predecessors={node_id: tuple(sources) for node_id, sources in predecessors.items()},
            sinks=tuple(node_id for node_id in nodes if not successors[node_id]),
            end_nodes=tuple(node_id for node_id, node in nodes.items() if node.type == END_NODE_TYPE),
        )

    def error_target(self, node_id: str) -> str | None:
        node = self.nodes[node_id]
        return node.error_edge if node.on_error is OnError.ERROR_EDGE else None

    def downstream(self, node_ids: Iterable[str]) -> frozenset[str]:
        """These nodes and every node reachable from them along the edges."""
        reached = set(node_ids)
        work = deque(reached)
        while work:
            for target in self.successors[work.popleft()]:
                if target not in reached:
                    reached.add(target)
                    work.append(target)
        return frozenset(reached)
