"""Which workflows a workflow calls: its workflow nodes, its maps over workflow items and its agents'
workflow tools. Pure; the gateway
checks them when a workflow is stored, and a new job records the version each of them runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.models import WorkflowDefinition

WORKFLOW_NODE_TYPE = "workflow"
MAP_NODE_TYPE = "map"
AGENT_NODE_TYPE = "agent"


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


def called_workflows(node_type: str, config: dict[str, Any]) -> list[Call]:
    """The workflows a node calls: a workflow node's, a map's workflow item's, an agent's workflow tools'."""
    if node_type == WORKFLOW_NODE_TYPE:
        return [Call(config.get("workflow_id"), config.get("version"), "config.workflow_id")]
    if node_type == MAP_NODE_TYPE:
        return _workflow_item(config.get("node"), "config.node")
    tools = config.get("tools") if node_type == AGENT_NODE_TYPE else None
    if not isinstance(tools, list):
        return []
    return [
        call
        for index, tool in enumerate(tools)
        if isinstance(tool, dict)
        for call in _workflow_item(tool.get("node"), f"config.tools[{index}].node")
    ]


def _workflow_item(item: Any, where: str) -> list[Call]:
    if not (isinstance(item, dict) and item.get("type") == WORKFLOW_NODE_TYPE):
        return []
    called = item.get("config")
    if not isinstance(called, dict):
        return []
    return [Call(called.get("workflow_id"), called.get("version"), f"{where}.config.workflow_id")]


def unversioned_calls(definition: WorkflowDefinition) -> set[str]:
    """The fixed workflow ids this workflow calls without naming a version: a new job pins their latest."""
    calls = (call for node in definition.nodes for call in called_workflows(node.type, node.config))
    return {call.workflow_id for call in calls if call.is_fixed and call.version is None}
