"""Tenants: another user's workflows, jobs and streams answer 404 everywhere; an admin sees all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.gateway.support import create_workflow, execute, linear_definition, read_socket, wait_for_job


async def _alices_job(http, alice) -> tuple[dict, dict]:
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "A"}))["id"])
    return workflow, job


async def test_another_user_gets_404_from_every_endpoint_and_changes_nothing(http, alice, bob):
    workflow, job = await _alices_job(http, alice)
    w, j = f"/api/v1/workflows/{workflow['id']}", f"/api/v1/jobs/{job['id']}"
    attempts = [
        ("GET", w, None),
        ("PUT", w, linear_definition("taken over")),
        ("DELETE", w, None),
        ("POST", f"{w}/execute", {"name": "B"}),
        ("GET", j, None),
        ("POST", f"{j}/cancel", None),
        ("POST", f"{j}/rerun", None),
        ("GET", f"{j}/logs", None),
        ("GET", f"{j}/events", None),
    ]
    for method, url, body in attempts:
        response = await http.request(method, url, json=body, headers=bob.headers)
        assert response.status_code == 404, f"{method} {url} answered {response.status_code}"
        assert "not found" in response.json()["detail"]

    unknown = await http.get("/api/v1/workflows/0123456789abcdef", headers=bob.headers)
    assert (
        unknown.json()["detail"].replace("0123456789abcdef", workflow["id"])
        == (await http.get(w, headers=bob.headers)).json()["detail"]
    ), "someone else's id and an unknown one answer alike"

    still = (await http.get(w, headers=alice.headers)).json()
    assert (still["version"], still["name"]) == (1, "greeting")
    jobs = (
        await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=alice.headers)
    ).json()
    assert jobs["total"] == 1


async def test_another_users_listings_and_analytics_leave_out_the_first_users_data(http, alice, bob):
    workflow, _ = await _alices_job(http, alice)
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert (await http.get("/api/v1/workflows", headers=bob.headers)).json()["total"] == 0
    for params in ({}, {"workflow_id": workflow["id"]}):
        assert (await http.get("/api/v1/jobs", params=params, headers=bob.headers)).json()["total"] == 0
    assert (await http.get("/api/v1/analytics/jobs", params={"since": since}, headers=bob.headers)).json()[
        "total"
    ] == 0
    assert (await http.get("/api/v1/analytics/workflows", headers=bob.headers)).json()["workflows"] == []


async def test_another_users_sockets_are_closed_with_4404(http, service, alice, bob):
    workflow, job = await _alices_job(http, alice)
    for path in (f"/ws/jobs/{job['id']}", f"/ws/workflow/{workflow['id']}"):
        result = await read_socket(f"{service.ws_url}{path}", bob.headers)
        assert (result.messages, result.close_code) == ([], 4404), path
        assert "not found" in result.close_reason
    own = await read_socket(f"{service.ws_url}/ws/jobs/{job['id']}", alice.headers)
    assert own.close_code == 1000 and own.messages[-1]["type"] == "job_completed"


async def test_an_admin_sees_and_streams_everyones_data(http, service, alice, admin):
    workflow, job = await _alices_job(http, alice)
    assert (await http.get(f"/api/v1/workflows/{workflow['id']}", headers=admin.headers)).status_code == 200
    assert (await http.get(f"/api/v1/jobs/{job['id']}", headers=admin.headers)).json()["owner"] == alice.sub
    listed = (
        await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=admin.headers)
    ).json()
    assert [item["id"] for item in listed["items"]] == [job["id"]]
    everyone = (await http.get("/api/v1/workflows", params={"limit": 500}, headers=admin.headers)).json()
    assert workflow["id"] in {item["id"] for item in everyone["items"]}
    streamed = await read_socket(f"{service.ws_url}/ws/jobs/{job['id']}", admin.headers)
    assert streamed.messages[-1]["type"] == "job_completed"
