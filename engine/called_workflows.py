"""Which workflows a workflow calls: its workflow nodes and its maps over workflow items. Pure; the gateway
checks them when a workflow is stored, and a new job records the version each of them runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.models import WorkflowDefinition

WORKFLOW_NODE_TYPE = "workflow"
MAP_NODE_TYPE = "map"


@dataclass(frozen=True)
class Call:
    workflow_id: Any
    version: Any
    field: str
    """The config field that names the workflow, for errors."""

    @property
    def is_fixed(self) -> bool:
        """The id is written out, not a template (a templated id is known only when its node runs)."""
        return isinstance(self.workflow_id, str) and "{{" not in self.workflow_id


def called_workflow(node_type: str, config: dict[str, Any]) -> Call | None:
    """The workflow a node calls, or None if it calls none."""
    if node_type == WORKFLOW_NODE_TYPE:
        return Call(config.get("workflow_id"), config.get("version"), "config.workflow_id")
    item = config.get("node") if node_type == MAP_NODE_TYPE else None
    if (
        isinstance(item, dict)
        and item.get("type") == WORKFLOW_NODE_TYPE
        and isinstance(item.get("config"), dict)
    ):
        called = item["config"]
        return Call(called.get("workflow_id"), called.get("version"), "config.node.config.workflow_id")
    return None


def unversioned_calls(definition: WorkflowDefinition) -> set[str]:
    """The fixed workflow ids this workflow calls without naming a version: a new job pins their latest."""
    calls = (called_workflow(node.type, node.config) for node in definition.nodes)
    return {call.workflow_id for call in calls if call is not None and call.is_fixed and call.version is None}
