"""Analytics over a time range of job creation: the caller's own jobs (an admin's: everyone's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from engine.errors import Problem
from engine.records import JobAnalytics, WorkflowAnalytics
from gateway.deps import CurrentUser, StoreDep, authenticate
from gateway.errors import ERROR_RESPONSES, InvalidRequestError

router = APIRouter(
    tags=["analytics"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(authenticate)],
)


@dataclass(frozen=True)
class TimeRange:
    since: datetime | None
    until: datetime | None


def _utc(moment: datetime | None) -> datetime | None:
    """Times without an offset are read as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def time_range(
    since: Annotated[
        datetime | None, Query(description="jobs created at or after (ISO 8601; UTC if no offset)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="jobs created before (ISO 8601; UTC if no offset)")
    ] = None,
) -> TimeRange:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidRequestError(
            "empty time range", problems=[Problem("must be after `since`", field="query.until")]
        )
    return TimeRange(since, until)


Range = Annotated[TimeRange, Depends(time_range)]


@router.get(
    "/api/v1/analytics/workflows",
    summary="Per workflow: counts per status, success rate, p50/p95 durations, LLM tokens",
)
async def workflow_analytics(store: StoreDep, principal: CurrentUser, window: Range) -> WorkflowAnalytics:
    return await store.workflow_analytics(principal.owner_filter, window.since, window.until)


@router.get(
    "/api/v1/analytics/jobs",
    summary="Counts per status, success rate, p50/p95 durations, per node type, LLM tokens",
)
async def job_analytics(store: StoreDep, principal: CurrentUser, window: Range) -> JobAnalytics:
    return await store.job_analytics(principal.owner_filter, window.since, window.until)
