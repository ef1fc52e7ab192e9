"""The schedule part of the Store contract, against every store: a schedule reads back as written, lists
newest first by owner, workflow and enabled, keeps its firing state through a settings change, records
slots (never moving back, the history capped) and is deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import NotFoundError
from engine.schedules import (
    HISTORY_LIMIT,
    Catchup,
    Overlap,
    ScheduleEvent,
    ScheduleRecord,
    ScheduleSettings,
)
from storage.protocols import Store

pytestmark = pytest.mark.timeout(20)

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def schedule(
    schedule_id: str, owner: str = "alice", workflow_id: str = "w1", **settings: object
) -> ScheduleRecord:
    return ScheduleRecord(
        id=schedule_id,
        owner=owner,
        owner_roles=["ops"],
        workflow_id=workflow_id,
        created_at=T0 + timedelta(seconds=len(schedule_id)),
        since=T0,
        **{"cron": "* * * * *", "input": {"$odd.key": [1, {"x": None}]}, **settings},
    )


async def test_a_schedule_reads_back_as_written(store: Store):
    written = schedule("s1", timezone="Europe/Berlin", overlap=Overlap.CANCEL_PREVIOUS, catchup=Catchup.ALL)
    assert await store.create_schedule(written) == written
    assert await store.get_schedule("s1") == written
    with pytest.raises(NotFoundError):
        await store.get_schedule("nope")


async def test_schedules_list_newest_first_by_owner_workflow_and_enabled(store: Store):
    for record in (
        schedule("a"),
        schedule("bb", workflow_id="w2"),
        schedule("ccc", owner="bob"),
        schedule("dddd", enabled=False),
    ):
        await store.create_schedule(record)

    async def ids(**filters: object) -> tuple[list[str], int]:
        page = await store.list_schedules(**filters)  # type: ignore[arg-type]
        return [s.id for s in page.items], page.total

    assert await ids(owner=None) == (["dddd", "ccc", "bb", "a"], 4)
    assert await ids(owner="alice") == (["dddd", "bb", "a"], 3)
    assert await ids(owner="alice", offset=1, limit=1) == (["bb"], 3)
    assert await ids(owner=None, workflow_id="w1") == (["dddd", "ccc", "a"], 3)
    assert await ids(owner=None, enabled=True) == (["ccc", "bb", "a"], 3)
    assert await ids(owner=None, enabled=False) == (["dddd"], 1)


async def test_a_settings_change_keeps_the_firing_state(store: Store):
    await store.create_schedule(schedule("s1"))
    await store.record_schedule_slot(
        "s1", T0, "job-1", [ScheduleEvent(outcome="started", slot=T0, job_id="job-1")]
    )
    later = T0 + timedelta(hours=1)
    settings = ScheduleSettings(cron="0 7 * * 1-5", timezone="Europe/Berlin", enabled=False, input={"n": 2})
    updated = await store.update_schedule("s1", settings, later)
    assert (updated.cron, updated.timezone, updated.enabled, updated.input) == (
        "0 7 * * 1-5",
        "Europe/Berlin",
        False,
        {"n": 2},
    )
    assert (updated.since, updated.last_slot, updated.last_job_id, len(updated.history)) == (
        later,
        T0,
        "job-1",
        1,
    )
    assert updated.owner_roles == ["ops"]
    assert await store.get_schedule("s1") == updated
    assert (await store.list_schedules(None, enabled=False)).total == 1
    with pytest.raises(NotFoundError):
        await store.update_schedule("nope", settings, later)


async def test_slots_recorded_move_forward_only_and_the_history_is_capped(store: Store):
    await store.create_schedule(schedule("s1"))
    slots = [T0 + timedelta(minutes=m) for m in range(HISTORY_LIMIT + 5)]
    for minute, slot in enumerate(slots):
        outcome = "skipped" if minute % 2 else "started"
        job_id = None if minute % 2 else f"job-{minute}"
        await store.record_schedule_slot(
            "s1", slot, job_id, [ScheduleEvent(outcome=outcome, slot=slot, job_id=job_id)]
        )
    stored = await store.record_schedule_slot("s1", T0, None, [])
    assert stored.last_slot == slots[-1], "an older slot does not move it back"
    assert stored.last_job_id == f"job-{len(slots) - 1}"
    assert [e.slot for e in stored.history] == slots[-HISTORY_LIMIT:]
    assert await store.get_schedule("s1") == stored
    with pytest.raises(NotFoundError):
        await store.record_schedule_slot("nope", T0, None, [])


async def test_a_deleted_schedule_is_gone(store: Store):
    await store.create_schedule(schedule("s1"))
    await store.delete_schedule("s1")
    with pytest.raises(NotFoundError):
        await store.get_schedule("s1")
    assert (await store.list_schedules(None)).total == 0
    with pytest.raises(NotFoundError):
        await store.delete_schedule("s1")
