"""A workflow's workflow nodes (and maps of workflow items) must call workflows of the same owner: checked
when it is stored (and again by the job when the node runs, since a called workflow may be deleted
meanwhile)."""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidWorkflowError, NotFoundError, Problem
from engine.models import WorkflowDefinition
from storage.protocols import Store

WORKFLOW_NODE_TYPE = "workflow"
MAP_NODE_TYPE = "map"


def _called(node_type: str, config: dict[str, Any]) -> tuple[Any, str]:
    """The workflow id a node calls (None if it calls none), and the config field that names it."""
    if node_type == WORKFLOW_NODE_TYPE:
        return config.get("workflow_id"), "config.workflow_id"
    item = config.get("node") if node_type == MAP_NODE_TYPE else None
    if (
        isinstance(item, dict)
        and item.get("type") == WORKFLOW_NODE_TYPE
        and isinstance(item.get("config"), dict)
    ):
        return item["config"].get("workflow_id"), "config.node.config.workflow_id"
    return None, ""


async def check_called_workflows(
    store: Store, owner: str, definition: WorkflowDefinition, own_id: str | None = None
) -> None:
    """InvalidWorkflowError naming each workflow node whose `workflow_id` is no workflow of `owner`. A
    templated id is checked when the node runs; `own_id` (an update's) may call itself, up to the depth
    limit."""
    problems = []
    for node in definition.nodes:
        called, field = _called(node.type, node.config)
        if not isinstance(called, str) or "{{" in called or called == own_id:
            continue
        try:
            found = (await store.get_workflow(called)).owner == owner
        except NotFoundError:
            found = False
        if not found:
            problems.append(Problem(f"workflow {called} not found", node_id=node.id, field=field))
    if problems:
        raise InvalidWorkflowError(problems)
