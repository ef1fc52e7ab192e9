"""The node types the service knows: built-ins plus those plugins register through an entry point.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."workflow_service.nodes"]
    sentiment = "my_package.sentiment:SentimentNode"

and the class is registered under its `type_name` when the registry is built.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection, Iterable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from engine.errors import NotFoundError
from nodes.agent import AgentNode
from nodes.approval import ApprovalNode
from nodes.base import NodeType
from nodes.code import CodeNode
from nodes.conditional import ConditionalNode
from nodes.end import EndNode
from nodes.http import HttpNode
from nodes.llm import LlmNode
from nodes.loop import LoopNode
from nodes.map import MapNode
from nodes.start import StartNode
from nodes.switch import SwitchNode
from nodes.transform import TransformNode
from nodes.wait import WaitNode
from nodes.workflow import WorkflowNode

ENTRY_POINT_GROUP = "workflow_service.nodes"
BUILTIN_NODE_TYPES: tuple[type[NodeType[Any]], ...] = (
    StartNode,
    EndNode,
    TransformNode,
    ConditionalNode,
    SwitchNode,
    LlmNode,
    MapNode,
    LoopNode,
    HttpNode,
    CodeNode,
    ApprovalNode,
    WaitNode,
    WorkflowNode,
    AgentNode,
)

logger = logging.getLogger(__name__)


class NodeRegistry:
    """Node types by name; also the engine's NodeCatalog for validation."""

    def __init__(self, node_types: Iterable[type[NodeType[Any]]] = ()) -> None:
        self._types: dict[str, NodeType[Any]] = {}
        for node_type in node_types:
            self.register(node_type)

    def register(self, node_type: type[NodeType[Any]]) -> None:
        name = getattr(node_type, "type_name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{node_type.__qualname__} has no type_name")
        if name in self._types:
            raise ValueError(f"node type '{name}' is registered twice ({node_type.__qualname__})")
        self._types[name] = node_type()

    def get(self, name: str) -> NodeType[Any]:
        try:
            return self._types[name]
        except KeyError:
            raise NotFoundError(
                f"unknown node type '{name}'; known types: {', '.join(sorted(self._types))}"
            ) from None

    def all(self) -> list[NodeType[Any]]:
        return [self._types[name] for name in sorted(self._types)]

    # NodeCatalog
    def known_types(self) -> Collection[str]:
        return self._types.keys()

    def config_problems(self, node_type: str, config: dict[str, Any]) -> list[tuple[str | None, str]]:
        problems = self.get(node_type).validate_config_in(config, self)
        return [(problem.field, problem.message) for problem in problems]

    def routing_targets(self, node_type: str, config: dict[str, Any]) -> dict[str, str]:
        return self.get(node_type).routing_targets(config)

    def templated_config(self, node_type: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.get(node_type).templated_config(config, self)

    def waits(self, node_type: str) -> bool:
        return node_type in self._types and self._types[node_type].waits


def load_plugins(registry: NodeRegistry, group: str = ENTRY_POINT_GROUP) -> None:
    """Register every node type installed under the entry point group; a broken plugin is logged."""
    for entry_point in entry_points(group=group):
        try:
            registry.register(entry_point.load())
        except Exception:
            logger.exception("could not load node type plugin %r", entry_point.value)


def import_node_type(path: str) -> type[NodeType[Any]]:
    """`package.module:ClassName` -> the class; a clear error when it is not a node type."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"node plugin {path!r} must look like 'package.module:ClassName'")
    node_type = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(node_type, type) and issubclass(node_type, NodeType)):
        raise ValueError(f"node plugin {path!r} is not a NodeType subclass")
    return node_type


@lru_cache(maxsize=8)
def default_registry(extra_node_types: tuple[str, ...] = ()) -> NodeRegistry:
    """Built-ins, installed entry-point plugins, and `extra_node_types` named by import path (the
    NODE_PLUGINS setting, for node types that are not packaged)."""
    registry = NodeRegistry(BUILTIN_NODE_TYPES)
    load_plugins(registry)
    for path in extra_node_types:
        registry.register(import_node_type(path))
    return registry
