"""What the browser page reads beyond the basic API: workflows searched by name, a workflow's versions, one
node's log entries, each node's rendered config; and the development token route, which this gateway
(not bound to loopback, so not the embedded development mode) does not offer."""

from __future__ import annotations

from tests.gateway.support import create_workflow, execute, linear_definition, wait_for_job


async def test_workflows_are_searched_by_name_within_the_callers_own(http, alice, bob):
    mine = await create_workflow(http, alice, linear_definition("Quarterly REPORT digest"))
    await create_workflow(http, alice, linear_definition("something else"))
    await create_workflow(http, bob, linear_definition("report of bob"))
    page = (await http.get("/api/v1/workflows", params={"name": "report"}, headers=alice.headers)).json()
    assert ([w["id"] for w in page["items"]], page["total"]) == ([mine["id"]], 1)
    too_long = await http.get("/api/v1/workflows", params={"name": "x" * 257}, headers=alice.headers)
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "query.name"


async def test_a_workflows_versions_are_listed_and_each_read_by_its_owner_only(http, alice, bob):
    workflow = await create_workflow(http, alice, linear_definition("v1"))
    url = f"/api/v1/workflows/{workflow['id']}"
    assert (await http.put(url, json=linear_definition("v2"), headers=alice.headers)).status_code == 200

    versions = (await http.get(f"{url}/versions", headers=alice.headers)).json()
    assert [(v["version"], v["name"]) for v in versions["items"]] == [(2, "v2"), (1, "v1")]
    first = await http.get(f"{url}/versions/1", headers=alice.headers)
    assert (first.status_code, first.json()["name"]) == (200, "v1")

    assert (await http.delete(url, headers=alice.headers)).status_code == 204
    kept = await http.get(f"{url}/versions/2", headers=alice.headers)
    assert (kept.status_code, kept.json()["definition"]["name"]) == (200, "v2")
    assert (await http.get(f"{url}/versions", headers=alice.headers)).status_code == 404

    for path in (f"{url}/versions/1", f"{url}/versions/3"):
        response = await http.get(path, headers=bob.headers if path.endswith("/1") else alice.headers)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    huge = await http.get(f"{url}/versions/{10**20}", headers=alice.headers)
    assert huge.status_code == 422


async def test_a_jobs_log_is_read_for_one_node_and_each_node_shows_its_rendered_config(http, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "Ada"}))["id"])
    assert job["nodes"]["greet"]["rendered_config"] == {"template": {"text": "Hello Ada"}}
    logs = (
        await http.get(f"/api/v1/jobs/{job['id']}/logs", params={"node_id": "greet"}, headers=alice.headers)
    ).json()
    assert [entry["message"] for entry in logs["items"]] == ["node greet: started", "node greet: completed"]
    assert {entry["node_id"] for entry in logs["items"]} == {"greet"}


async def test_development_tokens_are_not_offered_outside_the_embedded_development_mode(http, service):
    assert not service.app.state.settings.embedded_development_mode
    response = await http.post("/api/v1/dev/token", json={"sub": "alice"})
    assert response.status_code == 404
    assert "only in the embedded development mode" in response.json()["detail"]
    refused_first = await http.post("/api/v1/dev/token", json={"sub": "", "roles": ["admin"]})
    assert refused_first.status_code == 404, "the mode is checked before the body"
