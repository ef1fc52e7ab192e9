"""The API fuzzed: schemathesis generates requests from the gateway's own OpenAPI document, valid ones and
invalid ones, for every route, and sends them with a valid token to the real gateway (real Ray, SQLite and
Redis, uvicorn on loopback). No answer may be a 500, and every answer must be documented: its status
code, content type and body schema.

Left out, with reasons: the SSE route (`GET /api/v1/jobs/{job_id}/events`) streams until its job ends,
so one request can take a job's whole life; tests/gateway/test_events.py and test_boundaries.py cover its
input (ids, `after`, Last-Event-ID). WebSockets are not in the OpenAPI document; they read no JSON.

Each operation runs a fixed number of examples, derandomized (the same requests every run), first with
generated ids, then, where a path names a workflow, job or node type, with real ones of this user, so
the requests reach the store and the runtime rather than stopping at 404. Node tests run only pure node
types (a generated config must not reach the network or the sandbox).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, strategies
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nodes.registry import BUILTIN_NODE_TYPES
from tests.gateway.support import create_workflow, execute, linear_definition, wait_for_job

pytestmark = pytest.mark.timeout(300)

EXAMPLES_PER_RUN = 8
STREAMING = {("GET", "/api/v1/jobs/{job_id}/events")}
PURE_NODE_TYPES = {"transform", "conditional", "switch", "start", "end"}
UNSAFE_NODE_TYPES = {node.type_name for node in BUILTIN_NODE_TYPES} - PURE_NODE_TYPES
"""Node types whose test run could reach the network, a model or the sandbox with a generated config."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REQUEST_TIMEOUT_S = 30


@dataclass
class FuzzReport:
    requests: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    """(method, path, status) -> how many answers."""


def _settings() -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=EXAMPLES_PER_RUN,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _run(strategy: strategies.SearchStrategy[Any], send: Callable[[Any], None]) -> str | None:
    """Send every generated case; the first failure's report, or None."""

    @_settings()
    @hypothesis.given(case=strategy)
    def each(case: Any) -> None:
        hypothesis.assume((case.path_parameters or {}).get("node_type") not in UNSAFE_NODE_TYPES)
        send(case)

    try:
        each()
    except (Exception, BaseExceptionGroup) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def fuzz(document: dict[str, Any], base_url: str, token: str, job_id: str) -> FuzzReport:
    """Runs in a worker thread: schemathesis's requests are blocking, and the gateway serves on the loop.
    Each request has a connection of its own: after a 500 the server closes the one it answered on."""
    schema = schemathesis.openapi.from_dict(document)
    report = FuzzReport()
    headers = {"Authorization": f"Bearer {token}"}

    def real_ids() -> dict[str, list[str]]:
        """A workflow and a webhook on it of its own for each operation (some delete them), the one
        finished job."""
        created = requests.post(f"{base_url}/api/v1/workflows", json=linear_definition(), headers=headers)
        created.raise_for_status()
        workflow_id = created.json()["id"]
        hook = requests.post(f"{base_url}/api/v1/workflows/{workflow_id}/webhooks", headers=headers)
        hook.raise_for_status()
        return {
            "workflow_id": [workflow_id],
            "job_id": [job_id],
            "node_type": ["transform", "switch"],
            "hook_id": [hook.json()["id"]],
        }

    def send(case: Any) -> None:
        report.requests += 1
        response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        report.statuses[(case.operation.method.upper(), case.operation.path, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in STREAMING:
            continue
        runs = [operation.as_strategy(schemathesis.GenerationMode.POSITIVE)]
        if operation.body or next(iter(operation.iter_parameters()), None) is not None:
            runs.append(operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
        ids = real_ids()
        for parameter in operation.path_parameters:
            for value in ids.get(parameter.name, []):
                runs.append(operation.as_strategy(path_parameters={parameter.name: value}))
        for index, strategy in enumerate(runs):
            failure = _run(strategy, send)
            if failure is not None:
                report.failures[f"{key[0]} {key[1]} (run {index})"] = failure
    return report


async def test_every_route_answers_as_documented_and_never_500(http, service, alice):
    document = (await http.get("/openapi.json")).json()
    workflow = await create_workflow(http, alice)
    job = await wait_for_job(http, alice, (await execute(http, alice, workflow["id"], {"name": "Ada"}))["id"])
    report = await asyncio.to_thread(fuzz, document, service.base_url, alice.token, job["id"])
    assert report.requests >= 200, f"only {report.requests} requests were sent"
    operations = {(method, path) for method, path, _ in report.statuses}
    past_the_gate = {(method, path) for method, path, status in report.statuses if status not in (401, 404)}
    assert operations - past_the_gate == set(), "every operation had requests that reached its handler"
    assert not report.failures, "\n\n".join(
        f"{where}:\n{failure}" for where, failure in report.failures.items()
    )


async def test_the_statuses_no_generated_request_provokes_are_documented_too(http):
    """A body over MAX_BODY_BYTES (413), a record stored but unreadable (409), a store or bus that is down
    (503): each route that can answer one says so (401 and 503: every route behind a token)."""
    paths = (await http.get("/openapi.json")).json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if path.startswith("/api/") and operation.get("security"):
                assert {"401", "422", "503"} <= statuses, where
            if "requestBody" in operation:
                assert "413" in statuses, where
            if "{workflow_id}" in path or "{job_id}" in path or path.startswith("/api/v1/webhooks/"):
                assert {"404", "409"} <= statuses, where
