"""What the engine asks of the node registry, without importing it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol


class NodeCatalog(Protocol):
    def known_types(self) -> Collection[str]: ...

    def config_problems(self, node_type: str, config: dict[str, Any]) -> list[tuple[str | None, str]]:
        """(field, message) for each problem with `config`; fields holding templates are not type-checked."""

    def routing_targets(self, node_type: str, config: dict[str, Any]) -> dict[str, str]:
        """Config fields that name a successor to route to, e.g. {"true_edge": "ok", "false_edge": "ko"}."""

    def templated_config(self, node_type: str, config: dict[str, Any]) -> dict[str, Any]:
        """The part of a config that may hold templates (user code, for one, holds none)."""

    def waits(self, node_type: str) -> bool:
        """Whether the type pauses its job for a signal or a timer (approval, wait): only a workflow's own
        nodes may, not a map's items."""
