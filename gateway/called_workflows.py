"""A workflow's workflow nodes must call workflows of the same owner: checked when it is stored (and again
by the job when the node runs, since a called workflow may be deleted meanwhile)."""

from __future__ import annotations

from engine.errors import InvalidWorkflowError, NotFoundError, Problem
from engine.models import WorkflowDefinition
from storage.protocols import Store

WORKFLOW_NODE_TYPE = "workflow"


async def check_called_workflows(
    store: Store, owner: str, definition: WorkflowDefinition, own_id: str | None = None
) -> None:
    """InvalidWorkflowError naming each workflow node whose `workflow_id` is no workflow of `owner`. A
    templated id is checked when the node runs; `own_id` (an update's) may call itself, up to the depth
    limit."""
    problems = []
    for node in definition.nodes:
        called = node.config.get("workflow_id") if node.type == WORKFLOW_NODE_TYPE else None
        if not isinstance(called, str) or "{{" in called or called == own_id:
            continue
        try:
            found = (await store.get_workflow(called)).owner == owner
        except NotFoundError:
            found = False
        if not found:
            problems.append(
                Problem(f"workflow {called} not found", node_id=node.id, field="config.workflow_id")
            )
    if problems:
        raise InvalidWorkflowError(problems)
