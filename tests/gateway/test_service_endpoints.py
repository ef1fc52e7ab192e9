"""/ping, /health (each dependency, 503 when one is down), /metrics, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re

from fastapi.routing import APIWebSocketRoute

from gateway.main import ROUTE_MODULES
from tests.gateway.support import create_workflow, execute, linear_definition, wait_for_job

DOCUMENTED_OPERATIONS = {
    ("get", "/api/v1/workflows"),
    ("post", "/api/v1/workflows"),
    ("get", "/api/v1/workflows/{workflow_id}"),
    ("put", "/api/v1/workflows/{workflow_id}"),
    ("delete", "/api/v1/workflows/{workflow_id}"),
    ("get", "/api/v1/workflows/{workflow_id}/versions"),
    ("get", "/api/v1/workflows/{workflow_id}/versions/{version}"),
    ("post", "/api/v1/workflows/{workflow_id}/execute"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{job_id}"),
    ("post", "/api/v1/jobs/{job_id}/cancel"),
    ("post", "/api/v1/jobs/{job_id}/rerun"),
    ("get", "/api/v1/jobs/{job_id}/waits"),
    ("post", "/api/v1/jobs/{job_id}/signals/{name}"),
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/jobs/{job_id}/logs"),
    ("get", "/api/v1/jobs/{job_id}/events"),
    ("get", "/api/v1/nodes"),
    ("get", "/api/v1/nodes/{node_type}"),
    ("post", "/api/v1/nodes/{node_type}/test"),
    ("get", "/api/v1/secrets"),
    ("put", "/api/v1/secrets/{name}"),
    ("delete", "/api/v1/secrets/{name}"),
    ("get", "/api/v1/analytics/workflows"),
    ("get", "/api/v1/analytics/jobs"),
    ("post", "/api/v1/dev/token"),
    ("get", "/health"),
    ("get", "/ping"),
    ("get", "/metrics"),
    ("post", "/api/v1/workflows/{workflow_id}/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{hook_id}"),
    ("patch", "/api/v1/webhooks/{hook_id}"),
    ("delete", "/api/v1/webhooks/{hook_id}"),
    ("post", "/api/v1/webhooks/{hook_id}/rotate"),
    ("post", "/hooks/{hook_id}"),
    ("post", "/api/v1/workflows/{workflow_id}/schedules"),
    ("get", "/api/v1/schedules"),
    ("get", "/api/v1/schedules/{schedule_id}"),
    ("put", "/api/v1/schedules/{schedule_id}"),
    ("delete", "/api/v1/schedules/{schedule_id}"),
}
PUBLIC = {"/health", "/ping", "/metrics", "/api/v1/dev/token", "/hooks/{hook_id}"}
"""Answered without a token (the development token route mints them, in the embedded development mode; a
webhook delivery proves it knows the hook's secret instead)."""


async def test_ping_answers_without_a_token(http):
    response = await http.get("/ping")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_health_reports_ray_store_and_redis(http):
    response = await http.get("/health")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "ok"
    assert {name: check["ok"] for name, check in report["checks"].items()} == {
        "ray": True,
        "store": True,
        "redis": True,
    }
    assert report["jobs"]["max_active_jobs"] == 2
    assert report["sandbox"]["ok"] is True, report["sandbox"]
    assert set(report["sandbox"]["parts"]) == {"bubblewrap", "seccomp", "cgroups", "landlock"}


async def test_health_says_why_code_cannot_run_but_stays_200(http, monkeypatch, tmp_path):
    """A machine without the sandbox still serves every workflow without code nodes."""
    monkeypatch.setenv("PATH", str(tmp_path))  # hides the real bwrap
    response = await http.get("/health")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "ok"
    assert report["sandbox"]["ok"] is False
    assert report["sandbox"]["detail"] == "bubblewrap (bwrap) is not installed"
    assert report["sandbox"]["parts"]["bubblewrap"] == {
        "ok": False,
        "detail": "bubblewrap (bwrap) is not installed",
    }


async def test_health_is_503_while_redis_is_down_and_recovers(http, service, alice):
    redis = service.runtime.embedded_redis
    assert redis is not None, "the tests run on the embedded Redis"
    redis.stop()
    try:
        response = await http.get("/health")
        assert response.status_code == 503
        report = response.json()
        assert report["status"] == "unavailable"
        assert (report["checks"]["redis"]["ok"], report["checks"]["store"]["ok"]) == (False, True)
        assert report["checks"]["redis"]["detail"]
    finally:
        redis.start()
    assert (await http.get("/health")).status_code == 200
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "x"}))["id"])
    assert job["status"] == "completed"


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rfind("}") + 1]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _scrape_until_finished(http, more_than: float) -> str:
    """/metrics once it counts more than `more_than` completed jobs (the watcher polls once a second)."""
    text = ""
    async with asyncio.timeout(10):
        while (_sample(text, "workflow_jobs_finished_total", status="completed") or 0) <= more_than:
            response = await http.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            text = response.text
            await asyncio.sleep(0.05)
    return text


async def test_metrics_count_jobs_nodes_and_http_requests_by_route(http, alice):
    before = _sample((await http.get("/metrics")).text, "workflow_jobs_finished_total", status="completed")
    workflow = await create_workflow(http, alice)
    job = await execute(http, alice, workflow["id"], {"name": "m"})
    await wait_for_job(http, alice, job["id"])
    text = await _scrape_until_finished(http, before or 0)
    assert _sample(text, "workflow_jobs_started_total") >= 1
    assert _sample(text, "workflow_job_duration_seconds_count", status="completed") >= 1
    assert (
        _sample(text, "workflow_node_duration_seconds_count", node_type="transform", status="completed") >= 1
    )
    route = "/api/v1/workflows/{workflow_id}/execute"
    assert _sample(text, "workflow_http_requests_total", method="POST", route=route, status="202") >= 1
    assert _sample(text, "workflow_http_requests_total", route=f"/api/v1/workflows/{workflow['id']}") is None
    assert re.search(r"^workflow_active_jobs \d", text, re.MULTILINE)
    assert re.search(r"^workflow_pending_jobs \d", text, re.MULTILINE)


async def test_an_anonymous_scrape_of_metrics_learns_no_tenants_ids_or_names(http, alice):
    """The attack of issue 13 (hole 11): /metrics needs no token, and named every tenant's workflows."""
    before = _sample((await http.get("/metrics")).text, "workflow_jobs_finished_total", status="completed")
    workflow = await create_workflow(http, alice, linear_definition("alice-private-project"))
    job = await execute(http, alice, workflow["id"], {"name": "m"})
    await wait_for_job(http, alice, job["id"])
    await http.request("PROPFIND", "/api/v1/workflows")  # a method the HTTP parser knows, the API does not
    text = await _scrape_until_finished(http, before or 0)
    for private in (workflow["id"], job["id"], alice.sub, "alice-private"):
        assert private not in text, f"/metrics shows {private!r}"
    assert _sample(text, "workflow_http_requests_total", method="other") >= 1, "unknown methods are bounded"
    labels = {name for name, _ in re.findall(r'(\w+)="([^"]*)"', text)}
    assert labels <= {"status", "node_type", "model", "kind", "method", "route", "le"}, labels


async def test_the_openapi_document_matches_the_routes(http):
    schema = (await http.get("/openapi.json")).json()
    documented = {(method, path) for path, operations in schema["paths"].items() for method in operations}
    assert documented == DOCUMENTED_OPERATIONS

    routes = [route for module in ROUTE_MODULES for route in module.router.routes]
    routed = {(method.lower(), route.path) for route in routes for method in getattr(route, "methods", ())}
    assert routed == DOCUMENTED_OPERATIONS
    sockets = {route.path for route in routes if isinstance(route, APIWebSocketRoute)}
    assert sockets == {"/ws/jobs/{job_id}", "/ws/workflow/{workflow_id}"}

    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path in DOCUMENTED_OPERATIONS:
        operation = schema["paths"][path][method]
        assert (path in PUBLIC) == ("security" not in operation), (method, path)
        if path not in PUBLIC:
            assert {"401", "422"} <= set(operation["responses"]), (method, path)
    events = schema["paths"]["/api/v1/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {p["name"] for p in events["parameters"]} >= {"job_id", "after", "Last-Event-ID", "token"}
    execute_params = schema["paths"]["/api/v1/workflows/{workflow_id}/execute"]["post"]["parameters"]
    assert "Idempotency-Key" in {p["name"] for p in execute_params}
