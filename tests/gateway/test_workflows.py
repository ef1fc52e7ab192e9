"""Workflow CRUD: validation listing every problem, versions on update, pagination, delete, body limit."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.gateway.conftest import MAX_BODY_BYTES
from tests.gateway.support import create_workflow, linear_definition


async def test_create_read_update_delete(http, alice):
    created = await create_workflow(http, alice, linear_definition("first"))
    assert created["version"] == 1 and created["name"] == "first"
    assert [node["id"] for node in created["definition"]["nodes"]] == ["start", "greet", "end"]
    url = f"/api/v1/workflows/{created['id']}"

    read = await http.get(url, headers=alice.headers)
    assert read.status_code == 200 and read.json() == created

    updated = await http.put(url, json=linear_definition("second"), headers=alice.headers)
    assert updated.status_code == 200
    assert (updated.json()["version"], updated.json()["name"], updated.json()["id"]) == (
        2,
        "second",
        created["id"],
    )
    assert (await http.get(url, headers=alice.headers)).json()["version"] == 2

    deleted = await http.delete(url, headers=alice.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await http.get(url, headers=alice.headers)
    assert gone.status_code == 404
    assert created["id"] in gone.json()["detail"] and gone.json()["errors"] == []
    assert (await http.delete(url, headers=alice.headers)).status_code == 404


async def test_create_answers_201_with_location(http, alice):
    response = await http.post("/api/v1/workflows", json=linear_definition(), headers=alice.headers)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/workflows/{response.json()['id']}"


async def test_list_is_paginated_newest_first_with_total(http, alice):
    ids = [(await create_workflow(http, alice, linear_definition(f"wf-{i}")))["id"] for i in range(5)]
    first = await http.get("/api/v1/workflows", params={"limit": 2}, headers=alice.headers)
    assert first.status_code == 200
    page = first.json()
    assert set(page) == {"items", "total", "offset", "limit"}
    assert (page["total"], page["offset"], page["limit"]) == (5, 0, 2)
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    rest = (
        await http.get("/api/v1/workflows", params={"offset": 2, "limit": 50}, headers=alice.headers)
    ).json()
    assert [item["id"] for item in rest["items"]] == ids[::-1][2:]


async def test_bad_pagination_is_422_in_the_error_shape(http, alice):
    response = await http.get("/api/v1/workflows", params={"limit": 0, "offset": -1}, headers=alice.headers)
    assert response.status_code == 422
    fields = {problem["field"] for problem in response.json()["errors"]}
    assert fields == {"query.limit", "query.offset"}


async def test_an_invalid_definition_lists_all_its_problems(http, alice):
    definition = {
        "name": "broken",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {"id": "mystery", "type": "teleport", "config": {}},
            {"id": "shape", "type": "transform", "config": {}},
            {"id": "start", "type": "end", "config": {}},
        ],
        "edges": [{"source": "start", "target": "nowhere"}],
    }
    response = await http.post("/api/v1/workflows", json=definition, headers=alice.headers)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "errors"}
    problems = {(p["node_id"], p["field"]) for p in body["errors"]}
    assert ("mystery", "type") in problems, body
    assert ("shape", "config.template") in problems, body
    assert ("start", "id") in problems, body
    assert (None, "edges[0].target") in problems, body
    assert len(body["errors"]) == 4, body
    assert all(set(p) == {"node_id", "field", "message"} and p["message"] for p in body["errors"])


async def test_schema_errors_name_the_node_and_field(http, alice):
    definition = linear_definition()
    definition["nodes"][1]["timeout_s"] = -5
    definition["name"] = ""
    response = await http.post("/api/v1/workflows", json=definition, headers=alice.headers)
    assert response.status_code == 422
    problems = {(p["node_id"], p["field"]) for p in response.json()["errors"]}
    assert problems == {("greet", "timeout_s"), (None, "name")}


async def test_update_with_an_invalid_definition_is_422_and_keeps_the_version(http, alice):
    workflow = await create_workflow(http, alice)
    url = f"/api/v1/workflows/{workflow['id']}"
    response = await http.put(url, json={"name": "x", "nodes": []}, headers=alice.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "nodes"
    assert (await http.get(url, headers=alice.headers)).json()["version"] == 1


async def test_bodies_that_are_not_json_objects_are_422_not_500(http, alice):
    not_json = await http.post(
        "/api/v1/workflows",
        content=b"{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["field"].startswith("body")
    a_list = await http.post("/api/v1/workflows", json=[1, 2], headers=alice.headers)
    assert a_list.status_code == 422 and a_list.json()["errors"]


async def _raw_post(base_url: str, token: str, headers: str, parts: list[bytes]) -> tuple[int, dict]:
    """POST over a bare socket, sending only `parts` of the body, then read the answer to its end."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (
            f"POST /api/v1/workflows HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{headers}\r\n"
        )
        writer.write(head.encode())
        for part in parts:
            writer.write(part)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(service, alice):
    status, body = await _raw_post(
        service.base_url, alice.token, f"Content-Length: {MAX_BODY_BYTES + 1}\r\n", []
    )
    assert status == 413
    assert str(MAX_BODY_BYTES) in body["detail"] and body["errors"] == []


async def test_a_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit(service, alice):
    def chunked(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    prefix, spaces = b'{"name": "big", "description": "', b" " * 65536
    count = MAX_BODY_BYTES // len(spaces)
    assert len(prefix) + len(spaces) * count > MAX_BODY_BYTES >= len(prefix) + len(spaces) * (count - 1)
    parts = [chunked(prefix)] + [chunked(spaces)] * count
    status, body = await _raw_post(service.base_url, alice.token, "Transfer-Encoding: chunked\r\n", parts)
    assert status == 413
    assert str(MAX_BODY_BYTES) in body["detail"]


async def test_a_body_just_under_the_limit_is_read(http, alice):
    definition = linear_definition()
    overhead = len(json.dumps(definition).encode())
    definition["description"] = "x" * (MAX_BODY_BYTES - overhead - 100)
    response = await http.post("/api/v1/workflows", json=definition, headers=alice.headers)
    assert response.status_code == 201, response.text
