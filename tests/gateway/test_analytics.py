"""Analytics over a time range, per caller: counts per status, success rate, durations, node types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.gateway.support import create_workflow, execute, wait_for_job


async def test_job_and_workflow_analytics_count_the_callers_jobs_in_the_range(http, alice):
    before = datetime.now(UTC) - timedelta(seconds=1)
    workflow = await create_workflow(http, alice)
    jobs = [await execute(http, alice, workflow["id"], data) for data in ({"name": "a"}, {"name": "b"}, {})]
    for job in jobs:
        await wait_for_job(http, alice, job["id"])

    response = await http.get(
        "/api/v1/analytics/jobs", params={"since": before.isoformat()}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 3
    assert stats["counts_by_status"] == {"completed": 2, "failed": 1}
    assert stats["success_rate"] == 2 / 3
    assert stats["p50_duration_s"] is not None and stats["p95_duration_s"] >= stats["p50_duration_s"]
    assert stats["by_node_type"]["transform"]["count"] == 3
    assert stats["by_node_type"]["transform"]["failed"] == 1

    per_workflow = (await http.get("/api/v1/analytics/workflows", headers=alice.headers)).json()
    assert [(w["workflow_id"], w["total"]) for w in per_workflow["workflows"]] == [(workflow["id"], 3)]

    later = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    empty = (await http.get("/api/v1/analytics/jobs", params={"since": later}, headers=alice.headers)).json()
    assert empty["total"] == 0 and empty["success_rate"] is None


async def test_an_empty_or_malformed_range_is_422(http, alice):
    now = datetime.now(UTC)
    backwards = {"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}
    for path in ("/api/v1/analytics/jobs", "/api/v1/analytics/workflows"):
        response = await http.get(path, params=backwards, headers=alice.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.until"
    malformed = await http.get("/api/v1/analytics/jobs", params={"since": "yesterday"}, headers=alice.headers)
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "query.since"
