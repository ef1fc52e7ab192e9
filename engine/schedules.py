"""Schedules: a workflow started at the slots of a cron expression, as pure functions of the expression,
its time zone, the last slot fired and the clock.

Expressions have the five fields of cron (minute, hour, day of month, month, day of week), read by cronsim
in the schedule's IANA time zone (zoneinfo). Slots are handed around as UTC times. Daylight saving time
follows Debian's cron: a wall-clock time the clock skips (02:30 in Europe/Berlin on the last Sunday of
March) fires when the clock jumps (03:00 local, once); a time that happens twice (02:30 on the last Sunday
of October) fires once, at its first occurrence; a field of `*` or a step over the hour (`*/30 * * * *`)
keeps firing through the repeated hour, since those slots are different instants.

After downtime the schedule's `catchup` decides what runs of the slots that passed: `none` only a slot
that is not late (at most ON_TIME_S after its time), `latest` the most recent one, `all` each of them,
the most recent MAX_CATCHUP at most. What is not run is counted as dropped.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, Field

from engine.records import utcnow

MAX_CATCHUP = 100
"""Missed slots `catchup: all` runs at most: the most recent ones; the older are dropped (and logged)."""
ON_TIME_S = 30.0
"""A slot fired at most this long after its time is on time; later it was missed (the service was down)."""
NEXT_FIRES = 5
"""Fire times a schedule's record shows."""
HISTORY_LIMIT = 50
"""History entries a schedule keeps, the newest."""
MAX_CRON_LENGTH = 200


class Overlap(StrEnum):
    """What a slot does while the job of the schedule's previous slot has not ended."""

    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class Catchup(StrEnum):
    """Which of the slots that passed while nothing fired run when the keeper is back."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


class ScheduleSettings(BaseModel):
    """What the schedule's owner sets."""

    cron: str = Field(max_length=MAX_CRON_LENGTH)
    timezone: str = Field(default="UTC", max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    overlap: Overlap = Overlap.SKIP
    catchup: Catchup = Catchup.NONE


class ScheduleEvent(BaseModel):
    """One entry of a schedule's history: a slot that started a job, one skipped because the previous job
    still ran (overlap `skip`), one that failed to start, or slots that catchup dropped."""

    time: datetime = Field(default_factory=utcnow, description="when it was recorded")
    outcome: Literal["started", "skipped", "failed", "dropped"]
    slot: datetime | None = Field(
        default=None, description="the slot (UTC); for `dropped`, the latest dropped"
    )
    job_id: str | None = None
    dropped: int = Field(default=0, description="for `dropped`: how many slots")
    message: str | None = None


class ScheduleRecord(ScheduleSettings):
    """A stored schedule: its settings, its owner (the jobs run as the owner, with the roles the owner had
    when the schedule was created) and where its firing stands."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    owner: str
    owner_roles: list[str] = Field(default_factory=list)
    workflow_id: str
    since: datetime = Field(
        default_factory=utcnow,
        description="slots count from here: when the schedule was created, or its timing last changed",
    )
    last_slot: datetime | None = Field(default=None, description="the latest slot handled (fired or skipped)")
    last_job_id: str | None = Field(default=None, description="the job of the latest slot that started one")
    history: list[ScheduleEvent] = Field(default_factory=list, description="newest last")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def cursor(self) -> datetime:
        """Slots after this are due: the last slot handled, or `since` when that is later."""
        return max(self.last_slot, self.since) if self.last_slot is not None else self.since


class InvalidCronError(ValueError):
    """Not a five-field cron expression cronsim can read."""


class UnknownTimezoneError(ValueError):
    """Not an IANA time zone name zoneinfo knows."""


def check_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5:
        raise InvalidCronError(
            f"a cron expression has 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidCronError(f"not a valid cron expression: {exc}") from None
    return cron


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of zones, as "Europe"
        raise UnknownTimezoneError(
            f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)"
        ) from None


def _slots_after(cron: str, timezone: str, after: datetime) -> CronSim:
    return CronSim(cron, after.astimezone(zone(timezone)))


def fire_times(cron: str, timezone: str, after: datetime, count: int = NEXT_FIRES) -> list[datetime]:
    """The next `count` slots strictly after `after`, in UTC."""
    slots = _slots_after(cron, timezone, after)
    return [next(slots).astimezone(UTC) for _ in range(count)]


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    return fire_times(cron, timezone, after, 1)[0]


@dataclass(frozen=True)
class DueSlots:
    """The slots to fire now, oldest first, and how many passed slots are not fired (the latest of them)."""

    fire: list[datetime]
    dropped: int
    latest_dropped: datetime | None = None


def due_slots(cron: str, timezone: str, cursor: datetime, now: datetime, catchup: Catchup) -> DueSlots:
    """The slots after `cursor` and at or before `now`, as `catchup` runs them (see the module docstring)."""
    recent: deque[datetime] = deque(maxlen=MAX_CATCHUP + 1)
    passed = 0
    for slot in _slots_after(cron, timezone, cursor):
        if slot > now:
            break
        passed += 1
        recent.append(slot.astimezone(UTC))
    if not recent:
        return DueSlots([], 0)
    if catchup is Catchup.ALL:
        fire = list(recent)[-MAX_CATCHUP:]
    elif catchup is Catchup.LATEST:
        fire = [recent[-1]]
    else:
        on_time = now - recent[-1] <= timedelta(seconds=ON_TIME_S)
        fire = [recent[-1]] if on_time else []
    dropped = passed - len(fire)
    if not dropped:
        return DueSlots(fire, 0)
    earlier = [slot for slot in recent if slot not in fire]
    return DueSlots(fire, dropped, earlier[-1] if earlier else None)


def idempotency_key(schedule_id: str, slot: datetime) -> str:
    """The key of a slot's job: the same slot never starts a second job, whoever fires it."""
    return f"schedule:{schedule_id}:{slot.astimezone(UTC).isoformat()}"


def with_settings(schedule: ScheduleRecord, settings: ScheduleSettings, since: datetime) -> ScheduleRecord:
    """The schedule with new settings, counting slots from `since`; its firing state kept."""
    return schedule.model_copy(update={**settings.model_dump(), "since": since, "updated_at": utcnow()})


def with_slot(
    schedule: ScheduleRecord, slot: datetime, job_id: str | None, events: Sequence[ScheduleEvent]
) -> ScheduleRecord:
    """The schedule once `slot` was handled: the last slot never moves back, the history keeps its
    HISTORY_LIMIT newest entries."""
    last_slot = slot if schedule.last_slot is None else max(schedule.last_slot, slot)
    return schedule.model_copy(
        update={
            "last_slot": last_slot,
            "last_job_id": job_id or schedule.last_job_id,
            "history": [*schedule.history, *events][-HISTORY_LIMIT:],
        }
    )
