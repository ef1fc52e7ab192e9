"""Workflows: create, list, read, update (a new version), delete, execute."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response, status

from engine.errors import NotFoundError
from engine.records import Page, WorkflowRecord
from gateway.called_workflows import check_called_workflows
from gateway.deps import (
    CheckerDep,
    ControllerDep,
    CurrentUser,
    OwnedWorkflow,
    PageParams,
    RuntimeDep,
    StoreDep,
    WatcherDep,
    authenticate,
)
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, UNREADABLE, Responses, documented
from gateway.schedule_deletion import delete_schedules_of
from gateway.schemas import JobOut

router = APIRouter(
    tags=["workflows"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(authenticate)],
)
BY_ID: Responses = {**documented(404, "No such workflow"), **UNREADABLE}

DEFINITION_EXAMPLE = {
    "name": "Greeting",
    "description": "start -> transform -> end",
    "nodes": [
        {"id": "start", "type": "start", "config": {}},
        {"id": "greet", "type": "transform", "config": {"template": {"text": "Hello {{input.name}}"}}},
        {"id": "end", "type": "end", "config": {}},
    ],
    "edges": [{"source": "start", "target": "greet"}, {"source": "greet", "target": "end"}],
}
DefinitionBody = Annotated[
    dict[str, Any],
    Body(
        description="A workflow definition (name, description, nodes, edges); all problems are reported",
        examples=[DEFINITION_EXAMPLE],
    ),
]
InputBody = Annotated[
    dict[str, Any] | None,
    Body(
        description="The job's input data as-is, read by `{{input.*}}` templates (an empty body is {})",
        examples=[{"name": "Ada"}],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="A repeated request with the same key returns the job the first one created",
    ),
]


@router.get("/api/v1/workflows", response_model=Page[WorkflowRecord], summary="List workflows, newest first")
async def list_workflows(
    store: StoreDep,
    principal: CurrentUser,
    page: PageParams,
    name: Annotated[
        str | None,
        Query(max_length=256, description="only workflows whose name contains this (ASCII case ignored)"),
    ] = None,
) -> Page[WorkflowRecord]:
    return await store.list_workflows(principal.owner_filter, page.offset, page.limit, name_contains=name)


@router.post(
    "/api/v1/workflows",
    status_code=status.HTTP_201_CREATED,
    responses=BODY_TOO_LARGE,
    summary="Create a workflow",
)
async def create_workflow(
    body: DefinitionBody, store: StoreDep, principal: CurrentUser, checker: CheckerDep, response: Response
) -> WorkflowRecord:
    definition = await checker.workflow(body)
    await check_called_workflows(store, principal.subject, definition)
    workflow = await store.create_workflow(principal.subject, definition)
    response.headers["Location"] = f"/api/v1/workflows/{workflow.id}"
    return workflow


@router.get("/api/v1/workflows/{workflow_id}", responses=BY_ID, summary="Read a workflow's latest version")
async def get_workflow(workflow: OwnedWorkflow) -> WorkflowRecord:
    return workflow


@router.get(
    "/api/v1/workflows/{workflow_id}/versions",
    responses=BY_ID,
    summary="A workflow's versions, newest first",
)
async def list_workflow_versions(
    workflow: OwnedWorkflow, store: StoreDep, page: PageParams
) -> Page[WorkflowRecord]:
    return await store.list_workflow_versions(workflow.id, page.offset, page.limit)


@router.get(
    "/api/v1/workflows/{workflow_id}/versions/{version}",
    responses=BY_ID,
    summary="One version of a workflow, also after the workflow was deleted (what its jobs ran)",
)
async def get_workflow_version(
    workflow_id: Annotated[str, Path(max_length=128)],
    version: Annotated[int, Path(ge=1, le=2**53)],
    store: StoreDep,
    principal: CurrentUser,
) -> WorkflowRecord:
    workflow = await store.get_workflow(workflow_id, version)
    if not principal.may_access(workflow.owner):
        raise NotFoundError(f"workflow {workflow_id} version {version} not found")
    return workflow


@router.put(
    "/api/v1/workflows/{workflow_id}",
    responses={**BY_ID, **BODY_TOO_LARGE},
    summary="Replace a workflow's definition (a new version)",
)
async def update_workflow(
    workflow: OwnedWorkflow, body: DefinitionBody, store: StoreDep, checker: CheckerDep
) -> WorkflowRecord:
    definition = await checker.workflow(body)
    await check_called_workflows(store, workflow.owner, definition, own_id=workflow.id)
    return await store.update_workflow(workflow.id, definition)


@router.delete(
    "/api/v1/workflows/{workflow_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=BY_ID,
    summary="Delete a workflow and its schedules (jobs running it finish undisturbed)",
)
async def delete_workflow(workflow: OwnedWorkflow, store: StoreDep, runtime: RuntimeDep) -> Response:
    await store.delete_workflow(workflow.id)
    await delete_schedules_of(store, runtime.schedules, workflow.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/workflows/{workflow_id}/execute",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**BY_ID, **BODY_TOO_LARGE},
    summary="Start a job of the workflow's latest version",
)
async def execute_workflow(
    workflow: OwnedWorkflow,
    principal: CurrentUser,
    controller: ControllerDep,
    watcher: WatcherDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    body: InputBody = None,
) -> JobOut:
    job = await controller.execute_workflow(
        workflow.id, body or {}, principal.subject, idempotency_key, owner_roles=principal.roles
    )
    watcher.watch(job)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.from_record(job)
