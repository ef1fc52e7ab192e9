"""What the schedule endpoints take and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.records import utcnow
from engine.schedules import (
    NEXT_FIRES,
    Catchup,
    Overlap,
    ScheduleEvent,
    ScheduleRecord,
    ScheduleSettings,
    check_cron,
    fire_times,
    zone,
)
from gateway.schemas import JobSummary

SCHEDULE_EXAMPLE = {
    "cron": "0 7 * * 1-5",
    "timezone": "Europe/Berlin",
    "input": {"report": "daily"},
    "enabled": True,
    "overlap": "skip",
    "catchup": "none",
}


class ScheduleIn(ScheduleSettings):
    """A schedule's settings: a five-field cron expression read in an IANA time zone, the input of each job,
    and what a slot does while the previous job runs (`overlap`) or after downtime (`catchup`)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        return check_cron(cron)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        zone(name)
        return name


class ScheduleSummary(BaseModel):
    id: str
    owner: str
    workflow_id: str
    cron: str
    timezone: str
    input: dict[str, Any]
    enabled: bool
    overlap: Overlap
    catchup: Catchup
    last_slot: datetime | None = Field(description="the latest slot handled (started, skipped or dropped)")
    next_fires: list[datetime] = Field(
        description=f"the next {NEXT_FIRES} fire times (UTC); none when disabled"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, schedule: ScheduleRecord) -> ScheduleSummary:
        return cls(**schedule.model_dump(include=set(cls.model_fields)), next_fires=_next_fires(schedule))


class ScheduleOut(ScheduleSummary):
    """A schedule with its last jobs and its history (newest last): the slots started, those skipped
    because the previous job still ran, those that could not start, and what catchup dropped."""

    last_jobs: list[JobSummary] = Field(description="its newest jobs, newest first")
    history: list[ScheduleEvent]

    @classmethod
    def with_jobs(cls, schedule: ScheduleRecord, jobs: list[JobSummary]) -> ScheduleOut:
        summary = ScheduleSummary.from_record(schedule)
        return cls(**summary.model_dump(), last_jobs=jobs, history=schedule.history)


def _next_fires(schedule: ScheduleRecord) -> list[datetime]:
    if not schedule.enabled:
        return []
    return fire_times(schedule.cron, schedule.timezone, max(schedule.cursor, utcnow()))
