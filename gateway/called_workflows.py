"""A workflow's workflow nodes (and maps of workflow items, and agents' workflow tools) must call
workflows of the same owner: checked when it is stored (and again by the job when the node runs, since a
called workflow may be deleted meanwhile)."""

from __future__ import annotations

from engine.called_workflows import called_workflows
from engine.errors import InvalidWorkflowError, NotFoundError, Problem
from engine.models import WorkflowDefinition
from storage.protocols import Store


async def check_called_workflows(
    store: Store, owner: str, definition: WorkflowDefinition, own_id: str | None = None
) -> None:
    """InvalidWorkflowError naming each workflow node whose `workflow_id` is no workflow of `owner`. A
    templated id is checked when the node runs; `own_id` (an update's) may call itself, up to the depth
    limit."""
    problems = []
    for node in definition.nodes:
        for call in called_workflows(node.type, node.config):
            if not call.is_fixed or call.workflow_id == own_id:
                continue
            called, field = call.workflow_id, call.field
            try:
                found = (await store.get_workflow(called)).owner == owner
            except NotFoundError:
                found = False
            if not found:
                problems.append(Problem(f"workflow {called} not found", node_id=node.id, field=field))
    if problems:
        raise InvalidWorkflowError(problems)
