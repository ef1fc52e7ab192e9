"""A hostile template or condition, sent to the node test route and run as a job, ends at once with an
error that names the node, the field and the budget; meanwhile another user's `GET /api/v1/workflows`
keeps answering in under 100 ms, because nothing of a user's template runs on the gateway's event loop.

The latency bound is the security property here, so it is asserted. Another user's requests are sent
from a thread of their own, so a stalled gateway loop shows as a slow answer, not as a late request.
Before the fix, the test route rendered on the gateway's loop: `join` of repeated strings held it for
1.1 s, `tojson` for 2.5 s, the nested comparison for minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from engine.budget import MAX_VALUE_BYTES, MAX_WORK
from tests.gateway.support import User, create_workflow, execute, wait_for_job

LATENCY_BOUND_S = 0.1
REFUSED_WITHIN_S = 10.0
POLL_EVERY_S = 0.02
MIN_SAMPLES = 10
BYTES = f"exceeds the template budget of {MAX_VALUE_BYTES} bytes"
WORK = f"exceeds the template budget of {MAX_WORK} work units"
NESTED = "[[[0]*9999]*9999]*999"


@dataclass(frozen=True)
class Attack:
    node_type: str
    config: dict[str, Any]
    field: str
    fragment: str
    error_type: str = "template_error"
    input: dict[str, Any] = field(default_factory=dict)


def _transform(template: str) -> dict[str, Any]:
    return {"template": {"X": template}}


ATTACKS = {
    "nested-lists-compared": Attack(
        "transform", _transform(f"{{{{ {NESTED} == {NESTED} }}}}"), "config.template.X", BYTES
    ),
    "join-of-repeated-strings": Attack(
        "transform", _transform("{{ (['x'*99999]*9999) | join }}"), "config.template.X", BYTES
    ),
    "tojson-of-repeated-strings": Attack(
        "transform", _transform("{{ (['x'*999999]*999) | tojson }}"), "config.template.X", BYTES
    ),
    "sum-with-a-list-start": Attack(
        "transform", _transform("{{ ([[1]*1000]*1000) | sum(start=[]) }}"), "config.template.X", WORK
    ),
    "a-header-of-an-http-node": Attack(
        "http",
        {"url": "https://example.com/", "headers": {"X": "{{ (['x'*99999]*9999) | join }}"}},
        "config.headers.X",
        BYTES,
    ),
    "a-condition": Attack(
        "conditional",
        {"condition": f"{NESTED} == {NESTED}", "true_edge": "end", "false_edge": "end"},
        "config.condition",
        BYTES,
        error_type="condition_error",
    ),
}


class Poller:
    """Another user's GET, sent every POLL_EVERY_S from a thread, each answer timed."""

    def __init__(self, base_url: str, user: User) -> None:
        self.base_url, self.user = base_url, user
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = client.get("/api/v1/workflows", headers=self.user.headers)
                self.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.failures.append(response.text)
                self._stop.wait(POLL_EVERY_S)

    async def sampled(self, count: int) -> None:
        """Wait (without holding the event loop) until `count` answers were timed."""
        async with asyncio.timeout(30):
            while len(self.latencies) < count:
                await asyncio.sleep(POLL_EVERY_S)

    async def __aenter__(self) -> Poller:
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Join the thread without holding the loop, which serves the request it may still be making."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join)


def _workflow(attack: Attack) -> dict[str, Any]:
    return {
        "name": f"attack on {attack.node_type}",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {"id": "victim", "type": attack.node_type, "config": attack.config},
            {"id": "end", "type": "end", "config": {}},
        ],
        "edges": [{"source": "start", "target": "victim"}, {"source": "victim", "target": "end"}],
    }


async def _test_route_is_warm(http: httpx.AsyncClient, user: User) -> None:
    """A harmless node test first, so that finding the executor actor is not part of what is timed."""
    body = {"config": {"template": "{{ input.n + 1 }}"}, "input": {"n": 1}}
    response = await http.post("/api/v1/nodes/transform/test", json=body, headers=user.headers)
    assert response.status_code == 200 and response.json()["output"] == 2, response.text


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(ATTACKS))
async def test_an_attack_ends_at_once_on_the_test_route_and_in_a_job_while_others_are_served(
    http, service, alice, bob, name
):
    attack = ATTACKS[name]
    await create_workflow(http, bob)
    await _test_route_is_warm(http, alice)
    async with Poller(service.base_url, bob) as bystander:
        started = time.perf_counter()
        response = await http.post(
            f"/api/v1/nodes/{attack.node_type}/test",
            json={"config": attack.config, "input": attack.input},
            headers=alice.headers,
        )
        refused_in = time.perf_counter() - started
        workflow = await create_workflow(http, alice, _workflow(attack))
        job = await wait_for_job(
            http, alice, (await execute(http, alice, workflow["id"], attack.input))["id"]
        )
        await bystander.sampled(MIN_SAMPLES)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"node '{attack.node_type}' {attack.field}: "), detail
    assert attack.fragment in detail, detail
    assert refused_in < REFUSED_WITHIN_S

    assert job["status"] == "failed", job
    error = job["nodes"]["victim"]["error"]
    assert error["type"] == attack.error_type, error
    assert error["message"].startswith(f"node 'victim' {attack.field}: "), error
    assert attack.fragment in error["message"], error

    assert not bystander.failures
    assert max(bystander.latencies) < LATENCY_BOUND_S, sorted(bystander.latencies)[-5:]


def _costly_templates(count: int = 100, terms: int = 130) -> dict[str, str]:
    """`count` distinct expressions of about 2 KB each: parsing all of them costs about 0.5 s here."""
    return {
        f"f{index}": "{{ " + " + ".join(f"input.k{index}_{term}" for term in range(terms)) + " }}"
        for index in range(count)
    }


@pytest.mark.timeout(120)
async def test_validating_a_costly_definition_or_node_config_holds_no_one_else_up(http, service, alice, bob):
    """Validation parses every template; it runs in the gateway's worker processes, not on its loop.
    Before, creating this 210 KB workflow held the loop (and every other user's request) about 0.6 s."""
    templates = _costly_templates()
    definition = {
        "name": "costly to validate",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {"id": "wide", "type": "transform", "config": {"template": templates}},
        ],
        "edges": [{"source": "start", "target": "wide"}],
    }
    await create_workflow(http, bob)
    async with Poller(service.base_url, bob) as bystander:
        await bystander.sampled(3)
        created = await http.post("/api/v1/workflows", json=definition, headers=alice.headers)
        tested = await http.post(
            "/api/v1/nodes/transform/test", json={"config": {"template": templates}}, headers=alice.headers
        )
        await bystander.sampled(MIN_SAMPLES)
    assert created.status_code == 201, created.text
    assert tested.status_code == 422 and "input has no field 'k0_0'" in tested.text, tested.text
    assert not bystander.failures
    assert max(bystander.latencies) < LATENCY_BOUND_S, sorted(bystander.latencies)[-5:]
