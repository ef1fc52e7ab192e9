"""Jobs: list, read, cancel, re-run, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response, status

from engine.records import JobStatus, LogEntry, Page
from gateway.deps import (
    ControllerDep,
    CurrentUser,
    OwnedJob,
    PageParams,
    StoreDep,
    WatcherDep,
    authenticate,
)
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, UNREADABLE, Responses, documented
from gateway.routes.workflows import IdempotencyKey
from gateway.schemas import JobOut, JobSummary, RerunRequest

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
NOT_FOUND: Responses = documented(404, "No such job")
BY_ID: Responses = {**NOT_FOUND, **UNREADABLE}


@router.get("/api/v1/jobs", summary="List jobs, newest first")
async def list_jobs(
    controller: ControllerDep,
    principal: CurrentUser,
    page: PageParams,
    workflow_id: Annotated[str | None, Query(max_length=128, description="only this workflow's jobs")] = None,
    status: Annotated[list[JobStatus] | None, Query(description="only jobs in these statuses")] = None,
    parent_job_id: Annotated[
        str | None, Query(max_length=128, description="only the child jobs of this job")
    ] = None,
    trigger_id: Annotated[
        str | None, Query(max_length=128, description="only the jobs this schedule or webhook started")
    ] = None,
) -> Page[JobSummary]:
    jobs = await controller.list_jobs(
        principal.owner_filter,
        workflow_id,
        status or None,
        page.offset,
        page.limit,
        parent_job_id,
        trigger_id,
    )
    return Page[JobSummary](
        items=[JobSummary.from_record(job) for job in jobs.items],
        total=jobs.total,
        offset=jobs.offset,
        limit=jobs.limit,
    )


@router.get(
    "/api/v1/jobs/{job_id}",
    responses=BY_ID,
    summary="Read a job: status, nodes, outputs, timings, errors, result",
)
async def get_job(job: OwnedJob) -> JobOut:
    return JobOut.from_record(job)


@router.post(
    "/api/v1/jobs/{job_id}/cancel",
    responses={**NOT_FOUND, **documented(409, "The job already ended, or its record cannot be read")},
    summary="Cancel a pending or running job",
)
async def cancel_job(job: OwnedJob, controller: ControllerDep) -> JobOut:
    return JobOut.from_record(await controller.cancel_job(job.id))


RerunBody = Annotated[
    RerunRequest | None,
    Body(
        description="Optional: `from_nodes` run again with what follows them; `input` replaces the input",
        examples=[{"from_nodes": ["summarise"]}],
    ),
]


@router.post(
    "/api/v1/jobs/{job_id}/rerun",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **NOT_FOUND,
        **documented(409, "The job has not ended yet, or its record cannot be read"),
        **BODY_TOO_LARGE,
    },
    summary="Start a new job from an ended job's checkpoints: what it completed is kept, the rest runs",
)
async def rerun_job(
    job: OwnedJob,
    principal: CurrentUser,
    controller: ControllerDep,
    watcher: WatcherDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    body: RerunBody = None,
) -> JobOut:
    request = body or RerunRequest()
    rerun = await controller.rerun_job(
        job,
        principal.subject,
        request.from_nodes,
        request.input,
        idempotency_key,
        owner_roles=principal.roles,
    )
    watcher.watch(rerun)
    response.headers["Location"] = f"/api/v1/jobs/{rerun.id}"
    return JobOut.from_record(rerun)


@router.get("/api/v1/jobs/{job_id}/logs", responses=BY_ID, summary="A job's log entries, oldest first")
async def job_logs(
    job: OwnedJob,
    store: StoreDep,
    page: PageParams,
    node_id: Annotated[str | None, Query(max_length=128, description="only this node's entries")] = None,
) -> Page[LogEntry]:
    return await store.list_logs(job.id, page.offset, page.limit, node_id=node_id)
