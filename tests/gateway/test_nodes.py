"""Node types and their schemas; a test run goes through the job's execution path, errors are 422."""

from __future__ import annotations


async def test_node_types_are_listed_with_their_config_schema(http, alice):
    response = await http.get("/api/v1/nodes", headers=alice.headers)
    assert response.status_code == 200
    types = {node["type"]: node for node in response.json()}
    assert {"start", "end", "transform", "conditional"} <= set(types)
    assert "template" in types["transform"]["config_schema"]["properties"]
    assert all(node["description"] and node["execution"] for node in types.values())


async def test_one_node_type_and_an_unknown_one(http, alice):
    response = await http.get("/api/v1/nodes/conditional", headers=alice.headers)
    assert response.status_code == 200 and response.json()["type"] == "conditional"
    missing = await http.get("/api/v1/nodes/teleport", headers=alice.headers)
    assert missing.status_code == 404 and "known types" in missing.json()["detail"]
    run_missing = await http.post("/api/v1/nodes/teleport/test", json={}, headers=alice.headers)
    assert run_missing.status_code == 404


async def test_a_transform_runs_with_the_input(http, alice):
    body = {"config": {"template": {"total": "{{input.a + input.b}}", "who": "{{input.name}}"}}}
    body["input"] = {"a": 2, "b": 3, "name": "Ada"}
    response = await http.post("/api/v1/nodes/transform/test", json=body, headers=alice.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["output"] == {"total": 5, "who": "Ada"}
    assert result["node_type"] == "transform" and result["duration_s"] >= 0


async def test_a_conditional_reports_the_branch_not_taken(http, alice):
    body = {
        "config": {"condition": "{{input.value}} > 10", "true_edge": "big", "false_edge": "small"},
        "input": {"value": 42},
    }
    response = await http.post("/api/v1/nodes/conditional/test", json=body, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["inactive_targets"] == ["small"]


async def test_an_invalid_config_lists_its_problems(http, alice):
    response = await http.post(
        "/api/v1/nodes/transform/test", json={"config": {"templat": 1}}, headers=alice.headers
    )
    assert response.status_code == 422
    fields = {problem["field"] for problem in response.json()["errors"]}
    assert fields == {"config.template", "config.templat"}, response.json()


async def test_a_node_that_fails_is_422_with_its_message_not_500(http, alice):
    body = {"config": {"template": "{{input.missing.deeper}}"}, "input": {}}
    response = await http.post("/api/v1/nodes/transform/test", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert "missing" in response.json()["detail"]


async def test_unknown_request_fields_are_422(http, alice):
    response = await http.post(
        "/api/v1/nodes/transform/test", json={"config": {"template": 1}, "inputs": {}}, headers=alice.headers
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.inputs"


async def test_a_map_tested_on_its_own_is_422_saying_it_runs_only_inside_a_job(http, alice):
    """A node test has no job to fan a map's items out with: its services say so (no fan-out), and the
    map refuses by name instead of failing on a missing service."""
    body = {"config": {"items": "{{input.xs}}", "node": {"type": "transform", "config": {"template": 1}}}}
    body["input"] = {"xs": [1, 2]}
    response = await http.post("/api/v1/nodes/map/test", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "map node 'map' runs only inside a job: nothing here runs its items"
