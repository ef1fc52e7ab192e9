"""Schedules: a workflow's jobs started at the slots of a cron expression, by the cluster's schedule keeper.

Each gateway stores the change and tells the keeper (actors/ray_runtime/schedule_keeper.py), which owns
the timing. A schedule belongs to its creator; its jobs run as the creator with the roles they had then.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response, status

from engine.records import Page, utcnow
from engine.schedules import ScheduleRecord
from gateway.deps import (
    CurrentUser,
    OwnedSchedule,
    OwnedWorkflow,
    PageParams,
    RuntimeDep,
    StoreDep,
    authenticate,
)
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, UNREADABLE, Responses, documented
from gateway.schedule_schemas import SCHEDULE_EXAMPLE, ScheduleIn, ScheduleOut, ScheduleSummary
from gateway.schemas import JobSummary
from storage.protocols import Store

router = APIRouter(tags=["schedules"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
BY_ID: Responses = {**documented(404, "No such schedule"), **UNREADABLE}
LAST_JOBS = 5
"""Jobs a schedule's record shows, the newest."""

ScheduleBody = Annotated[ScheduleIn, Body(examples=[SCHEDULE_EXAMPLE])]


async def _out(store: Store, schedule: ScheduleRecord) -> ScheduleOut:
    jobs = await store.list_jobs(trigger_id=schedule.id, limit=LAST_JOBS)
    return ScheduleOut.with_jobs(schedule, [JobSummary.from_record(job) for job in jobs.items])


@router.post(
    "/api/v1/workflows/{workflow_id}/schedules",
    status_code=status.HTTP_201_CREATED,
    responses={**documented(404, "No such workflow"), **UNREADABLE, **BODY_TOO_LARGE},
    summary="Schedule a workflow: its jobs start at the slots of a cron expression in a time zone",
)
async def create_schedule(
    workflow: OwnedWorkflow,
    body: ScheduleBody,
    principal: CurrentUser,
    store: StoreDep,
    runtime: RuntimeDep,
    response: Response,
) -> ScheduleOut:
    schedule = ScheduleRecord(
        **body.model_dump(),
        owner=principal.subject,
        owner_roles=sorted(principal.roles),
        workflow_id=workflow.id,
    )
    schedule = await store.create_schedule(schedule)
    await runtime.schedules.changed(schedule.id)
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return await _out(store, schedule)


@router.get("/api/v1/schedules", summary="List schedules, newest first")
async def list_schedules(store: StoreDep, principal: CurrentUser, page: PageParams) -> Page[ScheduleSummary]:
    schedules = await store.list_schedules(principal.owner_filter, page.offset, page.limit)
    return Page[ScheduleSummary](
        items=[ScheduleSummary.from_record(s) for s in schedules.items],
        total=schedules.total,
        offset=schedules.offset,
        limit=schedules.limit,
    )


@router.get(
    "/api/v1/schedules/{schedule_id}",
    responses=BY_ID,
    summary="Read a schedule: its next five fire times, its last jobs and its history",
)
async def get_schedule(schedule: OwnedSchedule, store: StoreDep) -> ScheduleOut:
    return await _out(store, schedule)


@router.put(
    "/api/v1/schedules/{schedule_id}",
    responses={**BY_ID, **BODY_TOO_LARGE},
    summary="Replace a schedule's settings (its history is kept)",
)
async def update_schedule(
    schedule: OwnedSchedule, body: ScheduleBody, store: StoreDep, runtime: RuntimeDep
) -> ScheduleOut:
    retimed = (body.cron, body.timezone) != (schedule.cron, schedule.timezone)
    resumed = body.enabled and not schedule.enabled
    # Changed timing, or a schedule enabled again, counts its slots from now: what passed before is not
    # missed, so catchup does not run it.
    since = utcnow() if retimed or resumed else schedule.since
    updated = await store.update_schedule(schedule.id, body, since)
    await runtime.schedules.changed(schedule.id)
    return await _out(store, updated)


@router.delete(
    "/api/v1/schedules/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=BY_ID,
    summary="Delete a schedule (a job it started runs on)",
)
async def delete_schedule(schedule: OwnedSchedule, store: StoreDep, runtime: RuntimeDep) -> Response:
    await store.delete_schedule(schedule.id)
    await runtime.schedules.changed(schedule.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
