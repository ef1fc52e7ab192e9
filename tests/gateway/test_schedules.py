"""The schedules API on the session's gateway (its keeper keeps the system's time; these schedules fire
once a year at most): create, read with the next five fire times, list, replace, delete; 422s naming the
field; another user's schedules and workflows are 404; an admin sees all; a deleted workflow takes its
schedules with it; and the keeper's own timer firing a slot that passed, seen in the record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.errors import ConflictError
from engine.schedules import Catchup, ScheduleRecord
from tests.gateway.support import User, create_workflow, wait_for_job

pytestmark = pytest.mark.timeout(60)

YEARLY = {"cron": "0 7 1 1 *", "timezone": "Europe/Berlin", "input": {"report": "yearly"}}


async def create_schedule(http, user: User, workflow_id: str, **settings: Any) -> dict[str, Any]:
    response = await http.post(
        f"/api/v1/workflows/{workflow_id}/schedules", json={**YEARLY, **settings}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_schedule_is_created_read_listed_replaced_and_deleted(http, alice):
    workflow = await create_workflow(http, alice)
    created = await create_schedule(http, alice, workflow["id"], overlap="cancel_previous", catchup="all")
    assert (created["owner"], created["workflow_id"], created["enabled"]) == (alice.sub, workflow["id"], True)
    assert (created["overlap"], created["catchup"], created["last_slot"]) == ("cancel_previous", "all", None)
    fires = [datetime.fromisoformat(t) for t in created["next_fires"]]
    assert len(fires) == 5 and fires == sorted(fires) and fires[0] > datetime.now(UTC)
    assert all((t.month, t.day, t.hour, t.minute) == (1, 1, 6, 0) for t in fires), "07:00 in Berlin, in UTC"
    assert created["last_jobs"] == [] and created["history"] == []

    url = f"/api/v1/schedules/{created['id']}"
    assert (await http.get(url, headers=alice.headers)).json() == created
    listed = (await http.get("/api/v1/schedules", headers=alice.headers)).json()
    assert [s["id"] for s in listed["items"]] == [created["id"]] and listed["total"] == 1
    assert "history" not in listed["items"][0]

    replaced = await http.put(
        url, json={**YEARLY, "cron": "30 6 * * 1-5", "enabled": False}, headers=alice.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["cron"], replaced.json()["enabled"], replaced.json()["next_fires"]) == (
        "30 6 * * 1-5",
        False,
        [],
    )
    assert replaced.json()["overlap"] == "skip", "a PUT replaces every setting: the default again"

    assert (await http.delete(url, headers=alice.headers)).status_code == 204
    assert (await http.get(url, headers=alice.headers)).status_code == 404
    assert (await http.delete(url, headers=alice.headers)).status_code == 404


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"cron": "61 * * * *"}, "body.cron"),
        ({"cron": "* * * *"}, "body.cron"),
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"overlap": "sometimes"}, "body.overlap"),
        ({"catchup": "some"}, "body.catchup"),
        ({"extra": 1}, "body.extra"),
    ],
)
async def test_a_bad_schedule_is_422_naming_the_field(http, alice, settings: dict[str, Any], field: str):
    workflow = await create_workflow(http, alice)
    response = await http.post(
        f"/api/v1/workflows/{workflow['id']}/schedules", json={**YEARLY, **settings}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_a_bad_replacement_is_422_and_changes_nothing(http, alice):
    workflow = await create_workflow(http, alice)
    created = await create_schedule(http, alice, workflow["id"])
    url = f"/api/v1/schedules/{created['id']}"
    response = await http.put(url, json={**YEARLY, "timezone": "Nowhere/Land"}, headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.timezone"
    assert (await http.get(url, headers=alice.headers)).json()["timezone"] == "Europe/Berlin"


async def test_another_users_schedules_and_workflows_are_404_and_an_admin_sees_all(http, alice, bob, admin):
    workflow = await create_workflow(http, alice)
    schedule = await create_schedule(http, alice, workflow["id"])
    url = f"/api/v1/schedules/{schedule['id']}"
    assert (await http.get(url, headers=bob.headers)).status_code == 404
    assert (await http.put(url, json=YEARLY, headers=bob.headers)).status_code == 404
    assert (await http.delete(url, headers=bob.headers)).status_code == 404
    on_alices = await http.post(
        f"/api/v1/workflows/{workflow['id']}/schedules", json=YEARLY, headers=bob.headers
    )
    assert on_alices.status_code == 404
    assert (await http.get("/api/v1/schedules", headers=bob.headers)).json()["total"] == 0
    assert (await http.get(url, headers=admin.headers)).json()["owner"] == alice.sub
    everyone = (await http.get("/api/v1/schedules", params={"limit": 500}, headers=admin.headers)).json()
    assert schedule["id"] in {s["id"] for s in everyone["items"]}
    assert (await http.get(url, headers=alice.headers)).status_code == 200, "bob changed nothing"


async def test_deleting_a_workflow_deletes_its_schedules(http, alice):
    workflow = await create_workflow(http, alice)
    other = await create_workflow(http, alice)
    doomed = [await create_schedule(http, alice, workflow["id"]) for _ in range(2)]
    kept = await create_schedule(http, alice, other["id"])
    assert (
        await http.delete(f"/api/v1/workflows/{workflow['id']}", headers=alice.headers)
    ).status_code == 204
    for schedule in doomed:
        assert (
            await http.get(f"/api/v1/schedules/{schedule['id']}", headers=alice.headers)
        ).status_code == 404
    listed = (await http.get("/api/v1/schedules", headers=alice.headers)).json()
    assert [s["id"] for s in listed["items"]] == [kept["id"]]


async def test_on_the_system_clock_a_slot_that_passed_fires_at_once_and_shows_in_the_record(
    http, service, alice
):
    """The keeper's own timer (not a test's tick): a schedule whose slots count from just before this
    minute's boundary has that slot due; with catchup `latest` the keeper runs it as soon as it hears of
    the schedule, once; and nobody else can tell this keeper the time."""
    workflow = await create_workflow(http, alice)
    runtime = service.runtime
    if datetime.now(UTC).second >= 57:  # not across the next boundary, which would add a slot
        await asyncio.sleep(4)
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    schedule = ScheduleRecord(
        owner=alice.sub,
        workflow_id=workflow["id"],
        cron="* * * * *",
        input={"name": "clock"},
        catchup=Catchup.LATEST,
        since=slot - timedelta(seconds=1),
    )
    await runtime.store.create_schedule(schedule)
    await runtime.schedules.changed(schedule.id)
    url = f"/api/v1/schedules/{schedule.id}"
    record = (await http.get(url, headers=alice.headers)).json()
    while not record["history"]:  # the slot is recorded once its job exists
        await asyncio.sleep(0.05)
        record = (await http.get(url, headers=alice.headers)).json()
    (job,) = record["last_jobs"]
    assert datetime.fromisoformat(record["last_slot"]) == slot
    assert job["trigger"] == {"kind": "schedule", "id": schedule.id}
    assert [(e["outcome"], e["job_id"]) for e in record["history"]] == [("started", job["id"])]
    done = await wait_for_job(http, alice, job["id"])
    assert (done["status"], done["result"], done["idempotency_key"]) == (
        "completed",
        {"greet": {"text": "Hello clock"}},
        f"schedule:{schedule.id}:{slot.isoformat()}",
    )
    listed = await http.get("/api/v1/jobs", params={"trigger_id": schedule.id}, headers=alice.headers)
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]
    assert (await http.delete(url, headers=alice.headers)).status_code == 204
    with pytest.raises(ConflictError, match="SCHEDULE_CLOCK=system"):
        await runtime.schedules.tick(slot + timedelta(days=1))
