"""JSON boundaries over real HTTP: one nesting limit on every body, node outputs bounded, offsets bounded.

Each attack here once poisoned a job or was answered badly: an execute body nested 220 levels deep was
stored but never read back; a definition nested 255 deep and a 20-digit offset were 500s; a body nested
60,000 deep was parsed down to a RecursionError (an undocumented 400), as were bytes that are not UTF-8;
a UTF-16 body could hide its nesting; a chain of transforms could build an output no read could parse."""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.nesting import MAX_JSON_DEPTH
from tests.gateway.support import create_workflow, execute, linear_definition, read_socket, wait_for_job
from tests.support.nesting import depth, nested


def definition_nested(levels: int) -> dict[str, Any]:
    """A valid definition whose body nests exactly `levels` deep (the transform's template is the deep part:
    body, nodes, the node, its config, then the template)."""
    definition = linear_definition("deep")
    definition["nodes"][1]["config"]["template"] = nested(levels - 4, "x")
    return definition


def assert_nesting_refused(response, limit: int = MAX_JSON_DEPTH) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert str(limit) in body["detail"]
    (problem,) = body["errors"]
    assert problem["field"] == "body"
    assert re.search(
        rf"limit of {limit} levels: level {limit + 1} opens at line \d+, column \d+", problem["message"]
    )


async def test_every_json_body_route_refuses_one_level_past_the_limit(http, alice):
    workflow = await create_workflow(http, alice)
    too_deep = nested(MAX_JSON_DEPTH + 1)
    routes = [
        ("POST", "/api/v1/workflows", definition_nested(MAX_JSON_DEPTH + 1)),
        ("PUT", f"/api/v1/workflows/{workflow['id']}", definition_nested(MAX_JSON_DEPTH + 1)),
        ("POST", f"/api/v1/workflows/{workflow['id']}/execute", too_deep),
        (
            "POST",
            "/api/v1/nodes/transform/test",
            {"config": {"template": "x"}, "input": nested(MAX_JSON_DEPTH)},
        ),
    ]
    for method, url, body in routes:
        assert depth(body) == MAX_JSON_DEPTH + 1
        assert_nesting_refused(await http.request(method, url, json=body, headers=alice.headers))


async def test_bodies_at_the_limit_are_taken_and_read_back(http, alice, admin):
    definition = definition_nested(MAX_JSON_DEPTH)
    assert depth(definition) == MAX_JSON_DEPTH
    response = await http.post("/api/v1/workflows", json=definition, headers=alice.headers)
    assert response.status_code == 201, response.text
    workflow = response.json()
    job = await execute(http, alice, workflow["id"], nested(MAX_JSON_DEPTH))
    finished = await wait_for_job(http, alice, job["id"])
    assert finished["status"] == "completed", finished
    assert finished["input"] == finished["nodes"]["start"]["output"] == nested(MAX_JSON_DEPTH)
    assert finished["result"] == {"greet": nested(MAX_JSON_DEPTH - 4, "x")}
    listing = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=admin.headers)
    assert listing.status_code == 200 and [j["id"] for j in listing.json()["items"]] == [job["id"]]


async def test_an_execute_body_nested_220_deep_is_422_and_poisons_no_job(http, alice, admin):
    """The hole: this body was stored, then the owner's read, the admin's listing and the metrics watcher
    failed on it for good (pydantic-core's JSON parser stops at 200 levels, json.dumps had written 220)."""
    workflow = await create_workflow(http, alice)
    response = await http.post(
        f"/api/v1/workflows/{workflow['id']}/execute", json=nested(220), headers=alice.headers
    )
    assert_nesting_refused(response)
    listing = await http.get("/api/v1/jobs", params={"workflow_id": workflow["id"]}, headers=admin.headers)
    assert listing.status_code == 200 and listing.json()["total"] == 0


async def test_a_definition_nested_255_deep_is_422_not_500(http, alice):
    """It was a 500: validated, then pydantic-core's serializer gave up at 255 levels when it was stored."""
    response = await http.post("/api/v1/workflows", json=definition_nested(255), headers=alice.headers)
    assert_nesting_refused(response)


@pytest.mark.parametrize("depth", [1_000, 60_000])
async def test_a_body_nested_far_deeper_is_refused_from_its_text(http, alice, depth):
    prefix = '{"name": "deep",\n "nodes": '
    body = prefix + "[" * depth + "]" * depth + "}"
    response = await http.post(
        "/api/v1/workflows", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_nesting_refused(response)
    column = len(' "nodes": ') + MAX_JSON_DEPTH
    assert response.json()["errors"][0]["message"].endswith(f"opens at line 2, column {column}")


async def test_brackets_inside_strings_do_not_count(http, alice):
    workflow = await create_workflow(http, alice)
    text = '[{"\\"' * 100
    job = await execute(http, alice, workflow["id"], {"name": text})
    assert (await wait_for_job(http, alice, job["id"]))["result"] == {"greet": {"text": f"Hello {text}"}}


async def test_a_chain_of_transforms_cannot_build_an_output_past_the_limit(http, alice):
    """Each transform wraps the previous output 60 levels deeper: within the body limit, every template is,
    but the fourth output would have nested 241 levels, past what the store's reader parses."""
    wrap = MAX_JSON_DEPTH - 4
    nodes = [{"id": "wrap1", "type": "transform", "config": {"template": nested(wrap, "{{input}}")}}]
    for index in range(2, 5):
        template = nested(wrap, f"{{{{wrap{index - 1}.output}}}}")
        nodes.append({"id": f"wrap{index}", "type": "transform", "config": {"template": template}})
    definition = {
        "name": "wrapping",
        "nodes": nodes,
        "edges": [{"source": f"wrap{i}", "target": f"wrap{i + 1}"} for i in range(1, 4)],
    }
    workflow = await create_workflow(http, alice, definition)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"v": 1}))["id"])
    assert job["status"] == "failed"
    assert job["nodes"]["wrap1"]["status"] == "completed"
    error = job["nodes"]["wrap2"]["error"]
    assert error["type"] == "nesting_too_deep" and not error["retryable"]
    assert (
        error["message"]
        == f"the output of node 'wrap2' is nested deeper than the limit of {MAX_JSON_DEPTH} levels"
    )
    assert job["nodes"]["wrap4"]["status"] == "cancelled"


async def test_a_node_test_whose_output_passes_the_limit_is_422(http, alice):
    body = {
        "config": {"template": nested(10, "{{input.deep}}")},
        "input": {"deep": nested(MAX_JSON_DEPTH - 2)},
    }
    response = await http.post("/api/v1/nodes/transform/test", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        f"the output of node type 'transform' is nested deeper than the limit of {MAX_JSON_DEPTH} levels"
    )


@pytest.mark.parametrize("path", ["/api/v1/workflows", "/api/v1/jobs", "/api/v1/jobs/{job}/logs"])
async def test_a_20_digit_offset_is_422_naming_the_parameter(http, alice, path):
    workflow = await create_workflow(http, alice)
    job = await execute(http, alice, workflow["id"], {"name": "Ada"})
    url = path.format(job=job["id"])
    response = await http.get(url, params={"offset": "9" * 20}, headers=alice.headers)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["errors"]
    assert problem["field"] == "query.offset" and "1000000" in problem["message"]
    deepest = await http.get(url, params={"offset": 1_000_000}, headers=alice.headers)
    assert deepest.status_code == 200 and deepest.json()["items"] == []


async def test_a_body_that_is_not_utf_8_is_422(http, alice):
    """The fuzzer's finding: bytes that are not UTF-8 were a 400 the API did not document."""
    response = await http.post(
        "/api/v1/workflows", content=b"\xff", headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"node_id": None, "field": "body", "message": "JSON text must be UTF-8: byte 0 is not"}
    ]


async def test_a_utf_16_body_cannot_hide_its_nesting(http, alice):
    """json.loads reads UTF-16 too; there a `∀` (U+2200) holds a quote's byte, which once hid the brackets
    after it from the nesting check, and a job input nested 220 deep got through."""
    workflow = await create_workflow(http, alice)
    text = ('{"k": "\u2200", "deep": ' + "[" * 220 + "]" * 220 + "}").encode("utf-16-le")
    response = await http.post(
        f"/api/v1/workflows/{workflow['id']}/execute",
        content=text,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["message"] == "JSON text must be UTF-8, this reads as utf-16-le"


async def test_the_streaming_routes_left_out_of_the_fuzz_refuse_their_bad_input(http, service, alice):
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "Ada"}))["id"])
    url = f"/api/v1/jobs/{job['id']}/events"
    for position in ("9" * 25, f"{'9' * 25}-0", f"0-{'9' * 25}", "-1"):
        response = await http.get(url, params={"after": position}, headers=alice.headers)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "query.after"
        response = await http.get(url, headers={**alice.headers, "Last-Event-ID": position})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "header.Last-Event-ID"
        result = await read_socket(f"{service.ws_url}/ws/jobs/{job['id']}?after={position}", alice.headers)
        assert result.close_code == 4422
    response = await http.get(f"/api/v1/jobs/{'j' * 129}/events", headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "path.job_id"
    for path in (f"/ws/jobs/{'j' * 5000}", f"/ws/workflow/{'w' * 5000}"):
        assert (await read_socket(f"{service.ws_url}{path}", alice.headers)).close_code == 4404
