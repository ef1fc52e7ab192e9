"""The schedule core: fire times in a time zone across DST changes both ways, and which slots are due
after a pause for each catchup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.schedules import (
    MAX_CATCHUP,
    Catchup,
    InvalidCronError,
    UnknownTimezoneError,
    check_cron,
    due_slots,
    fire_times,
    idempotency_key,
    zone,
)

pytestmark = pytest.mark.timeout(10)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "timezone", "after", "expected"),
    [
        ("* * * * *", "UTC", "2026-01-01T00:00:00", ["2026-01-01T00:01:00", "2026-01-01T00:02:00"]),
        (
            "0 7 * * 1-5",
            "Europe/Berlin",
            "2026-01-02T06:00:00",
            ["2026-01-05T06:00:00", "2026-01-06T06:00:00"],
        ),
        # Summer time: 07:00 in Berlin is 05:00 UTC.
        ("0 7 * * *", "Europe/Berlin", "2026-07-01T12:00:00", ["2026-07-02T05:00:00", "2026-07-03T05:00:00"]),
        # 29 March 2026, 02:30 does not exist in Berlin (02:00 -> 03:00): it fires once, as the clock jumps.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00",
            ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
        ),
        # 25 October 2026, 02:30 happens twice in Berlin: it fires once, at the first (summer time) one.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T12:00:00",
            ["2026-10-25T00:30:00", "2026-10-26T01:30:00"],
        ),
        # Every 30 minutes keeps its real interval through the repeated hour.
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2026-10-24T23:59:00",
            ["2026-10-25T00:00:00", "2026-10-25T00:30:00", "2026-10-25T01:00:00", "2026-10-25T01:30:00"],
        ),
        # New York's spring forward (8 March 2026, 02:00 -> 03:00).
        (
            "15 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00",
            ["2026-03-08T07:00:00", "2026-03-09T06:15:00"],
        ),
    ],
)
def test_fire_times(cron: str, timezone: str, after: str, expected: list[str]):
    assert fire_times(cron, timezone, utc(after), len(expected)) == [utc(t) for t in expected]


def test_the_slot_at_the_start_itself_is_not_next():
    assert fire_times("0 * * * *", "UTC", utc("2026-01-01T10:00:00"), 1) == [utc("2026-01-01T11:00:00")]


T0 = utc("2026-05-04T10:00:00")


@pytest.mark.parametrize(
    ("catchup", "now", "fired", "dropped", "latest_dropped"),
    [
        # On time: the slot of this minute fires whatever the catchup.
        (Catchup.NONE, T0 + timedelta(minutes=1, seconds=0.2), [1], 0, None),
        (Catchup.LATEST, T0 + timedelta(minutes=1, seconds=0.2), [1], 0, None),
        (Catchup.ALL, T0 + timedelta(minutes=1, seconds=0.2), [1], 0, None),
        # Nothing due yet.
        (Catchup.ALL, T0 + timedelta(seconds=59), [], 0, None),
        # Back after five minutes down, 40 s after the last slot: all five were missed.
        (Catchup.NONE, T0 + timedelta(minutes=5, seconds=40), [], 5, 5),
        (Catchup.LATEST, T0 + timedelta(minutes=5, seconds=40), [5], 4, 4),
        (Catchup.ALL, T0 + timedelta(minutes=5, seconds=40), [1, 2, 3, 4, 5], 0, None),
        # Back just after a slot: `none` still runs that one (it is on time), not the four before.
        (Catchup.NONE, T0 + timedelta(minutes=5, seconds=1), [5], 4, 4),
        # A long pause: `all` runs the latest MAX_CATCHUP slots.
        (
            Catchup.ALL,
            T0 + timedelta(minutes=250, seconds=40),
            list(range(251 - MAX_CATCHUP, 251)),
            250 - MAX_CATCHUP,
            250 - MAX_CATCHUP,
        ),
    ],
)
def test_due_slots_after_a_pause(
    catchup: Catchup, now: datetime, fired: list[int], dropped: int, latest_dropped: int | None
):
    due = due_slots("* * * * *", "UTC", T0, now, catchup)
    assert due.fire == [T0 + timedelta(minutes=m) for m in fired]
    assert due.dropped == dropped
    assert due.latest_dropped == (None if latest_dropped is None else T0 + timedelta(minutes=latest_dropped))


@pytest.mark.parametrize(
    ("cursor", "now", "fired"),
    [
        # Spring forward: 02:30 does not exist; the slot is 03:00 local (01:00 UTC), once.
        ("2026-03-28T12:00:00", "2026-03-29T01:00:10", ["2026-03-29T01:00:00"]),
        ("2026-03-29T01:00:00", "2026-03-29T23:00:00", []),
        # Fall back: 02:30 happens twice; the slot is the first (00:30 UTC), and nothing at 01:30 UTC.
        ("2026-10-24T12:00:00", "2026-10-25T00:30:05", ["2026-10-25T00:30:00"]),
        ("2026-10-25T00:30:00", "2026-10-25T01:30:05", []),
    ],
)
def test_due_slots_across_a_dst_change_fire_once(cursor: str, now: str, fired: list[str]):
    due = due_slots("30 2 * * *", "Europe/Berlin", utc(cursor), utc(now), Catchup.ALL)
    assert due.fire == [utc(t) for t in fired] and due.dropped == 0


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "* * * * * *", "61 * * * *", "* 25 * * *", "every minute", "*/0 * * * *"]
)
def test_bad_cron_expressions(cron: str):
    with pytest.raises(InvalidCronError):
        check_cron(cron)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/", "Europe"])
def test_unknown_time_zones(name: str):
    with pytest.raises(UnknownTimezoneError):
        zone(name)


def test_the_idempotency_key_names_the_slot_in_utc():
    slot = datetime.fromisoformat("2026-05-04T09:00:00+02:00")
    assert idempotency_key("s1", slot) == "schedule:s1:2026-05-04T07:00:00+00:00"
