"""Jobs: list, read, cancel, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from engine.records import JobStatus, LogEntry, Page
from gateway.deps import ControllerDep, CurrentUser, OwnedJob, PageParams, StoreDep, authenticate
from gateway.errors import ERROR_RESPONSES, UNREADABLE, Responses, documented
from gateway.schemas import JobOut, JobSummary

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
) -> Page[JobSummary]:
    jobs = await controller.list_jobs(
        principal.owner_filter, workflow_id, status or None, page.offset, page.limit
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


@router.get("/api/v1/jobs/{job_id}/logs", responses=BY_ID, summary="A job's log entries, oldest first")
async def job_logs(
    job: OwnedJob,
    store: StoreDep,
    page: PageParams,
    node_id: Annotated[str | None, Query(max_length=128, description="only this node's entries")] = None,
) -> Page[LogEntry]:
    return await store.list_logs(job.id, page.offset, page.limit, node_id=node_id)
