"""Starting a job's child jobs (the workflow node), free of Ray: the job actor hands it the job manager's
`submit` and `cancel`.

A child runs as the parent's owner, with the owner's roles (so the same secrets), on a workflow of that
owner: another owner's workflow is "not found", exactly as an unknown id, so ids cannot be probed. Its
idempotency key is the parent attempt's, so a parent resumed after a crash gets the child it started
before. A workflow node without a `version` runs the version its job pinned when it was created (the
called workflow's latest then), so a workflow changed while the parent runs does not change its children.
Nesting is limited: a job and its ancestors number at most MAX_WORKFLOW_DEPTH.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.called_workflows import unversioned_calls
from engine.errors import NodeExecutionError, NotFoundError
from engine.models import WorkflowDefinition
from engine.records import JobRecord
from storage.protocols import Store

Submit = Callable[[JobRecord], Awaitable[JobRecord]]
Cancel = Callable[[str], Awaitable[None]]


async def pinned_versions(store: Store, owner: str, definition: WorkflowDefinition) -> dict[str, int]:
    """The latest version of each workflow of `owner` that `definition` calls without a version. One
    that is missing or another owner's is left out: its node fails with "not found" when it runs."""
    pinned = {}
    for workflow_id in sorted(unversioned_calls(definition)):
        try:
            called = await store.get_workflow(workflow_id)
        except NotFoundError:
            continue
        if called.owner == owner:
            pinned[workflow_id] = called.version
    return pinned


class ChildJobStarter:
    def __init__(
        self, store: Store, submit: Submit, cancel: Cancel, parent: JobRecord, max_depth: int
    ) -> None:
        self._store = store
        self._submit = submit
        self._cancel = cancel
        self._parent = parent
        self._max_depth = max_depth

    async def start(
        self, workflow_id: str, version: int | None, input_data: dict[str, Any], node_id: str, key: str
    ) -> JobRecord:
        parent = self._parent
        chain = [*parent.workflow_chain, parent.workflow_id]
        if len(chain) >= self._max_depth:
            raise NodeExecutionError(
                f"workflows nest at most {self._max_depth} deep (MAX_WORKFLOW_DEPTH), and this child would "
                f"be deeper: {' -> '.join([*chain, workflow_id])}"
            )
        if version is None:
            version = parent.called_versions.get(workflow_id)
        shown = workflow_id if version is None else f"{workflow_id} version {version}"
        try:
            workflow = await self._store.get_workflow(workflow_id, version)
        except NotFoundError:
            raise NodeExecutionError(f"workflow {shown} not found") from None
        if workflow.owner != parent.owner:
            raise NodeExecutionError(f"workflow {shown} not found")
        child = JobRecord(
            id="",
            owner=parent.owner,
            owner_roles=parent.owner_roles,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            input=input_data,
            idempotency_key=f"child:{key}",
            parent_job_id=parent.id,
            parent_node_id=node_id,
            workflow_chain=chain,
            called_versions=await pinned_versions(self._store, parent.owner, workflow.definition),
        )
        return await self._submit(child)

    async def cancel(self, job_id: str) -> None:
        await self._cancel(job_id)
