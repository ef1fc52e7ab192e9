"""Webhooks on the real gateway (real Ray, SQLite, Redis, HTTP over loopback): a signed delivery starts a
job as the hook's owner with the documented input and trigger; what is not signed by the current secret
starts nothing; redeliveries start no second job; `respond: wait`; 413; 429; rotation; on/off; tenancy."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from engine.records import WebhookChanges
from storage.sqlite_store import SqliteStore
from tests.gateway.conftest import MAX_BODY_BYTES
from tests.gateway.support import User, create_workflow

pytestmark = pytest.mark.timeout(120)

ECHO = {
    "name": "echo",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "greet", "type": "transform", "config": {"template": {"text": "Hello {{input.body.name}}"}}},
        {"id": "end", "type": "end"},
    ],
    "edges": [{"source": "start", "target": "greet"}, {"source": "greet", "target": "end"}],
}
UNAUTHENTICATED = {
    "detail": "unknown or disabled webhook, or a wrong or missing signature or token",
    "errors": [],
}


def signed(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


async def new_hook(http: httpx.AsyncClient, user: User, **settings: Any) -> dict[str, Any]:
    workflow = await create_workflow(http, user, ECHO)
    response = await http.post(
        f"/api/v1/workflows/{workflow['id']}/webhooks", json=settings or None, headers=user.headers
    )
    assert response.status_code == 201, response.text
    hook = response.json()
    assert (
        hook["url"] == f"/hooks/{hook['id']}"
        and response.headers["Location"] == f"/api/v1/webhooks/{hook['id']}"
    )
    return hook


async def deliver(
    http: httpx.AsyncClient, hook: dict[str, Any], body: bytes, headers: dict[str, str], **params: str
) -> httpx.Response:
    return await http.post(hook["url"], content=body, headers=headers, params=params)


async def read_job(http: httpx.AsyncClient, user: User, job_id: str) -> dict[str, Any]:
    """The job as stored when it was created: its input and trigger do not wait for its end."""
    response = await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def triggered(http: httpx.AsyncClient, user: User, hook: dict[str, Any]) -> list[str]:
    response = await http.get("/api/v1/jobs", params={"trigger_id": hook["id"]}, headers=user.headers)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["items"]]


async def test_respond_wait_answers_the_jobs_result(http, alice):
    hook = await new_hook(http, alice, respond="wait", respond_timeout_s=30)
    body = b'{"name": "Wes"}'
    response = await deliver(http, hook, body, signed(hook["secret"], body))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": response.json()["job_id"],
        "status": "completed",
        "result": {"greet": {"text": "Hello Wes"}},
    }


async def test_respond_wait_answers_202_with_the_job_id_when_the_job_does_not_end_in_time(http, alice):
    waiting = {
        **ECHO,
        "nodes": [*ECHO["nodes"][:2], {"id": "end", "type": "wait", "config": {"signal": "go"}}],
    }
    workflow = await create_workflow(http, alice, waiting)
    created = await http.post(
        f"/api/v1/workflows/{workflow['id']}/webhooks",
        json={"respond": "wait", "respond_timeout_s": 0.5},
        headers=alice.headers,
    )
    hook = created.json()
    body = b'{"name": "Slow"}'
    response = await deliver(http, hook, body, signed(hook["secret"], body))
    assert response.status_code == 202, response.text
    assert response.json()["status"] in {"pending", "running"} and response.json()["result"] is None


async def test_a_signed_delivery_starts_a_job_as_the_owner_with_body_headers_and_query(http, alice):
    hook = await new_hook(http, alice)
    assert hook["secret"].startswith("whsec_") and hook["owner"] == alice.sub and hook["enabled"]
    body = b'{"name": "Ada", "action": "opened"}'
    headers = {**signed(hook["secret"], body), "X-Tag": "crm", "Cookie": "session=s3cr3t"}
    response = await deliver(http, hook, body, headers, source="crm")
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.json()["status"] in {"pending", "running", "completed"}
    job = await read_job(http, alice, job_id)
    assert job["owner"] == alice.sub and job["trigger"] == {"kind": "webhook", "id": hook["id"]}
    assert job["input"]["body"] == {"name": "Ada", "action": "opened"}
    assert job["input"]["query"] == {"source": "crm"}
    sent = job["input"]["headers"]
    assert sent["x-tag"] == "crm" and sent["content-type"] == "application/json"
    assert not {"x-signature-256", "cookie", "authorization"} & set(sent)
    assert await triggered(http, alice, hook) == [job_id]
    text = await deliver(http, hook, b"plain text", signed(hook["secret"], b"plain text"))
    assert (await read_job(http, alice, text.json()["job_id"]))["input"]["body"] == "plain text"


async def test_what_the_current_secret_did_not_sign_is_refused_alike_and_starts_nothing(http, alice):
    hook = await new_hook(http, alice)
    body = b'{"name": "Eve"}'
    refused = {
        "no signature": {"Content-Type": "application/json"},
        "a wrong one": signed("whsec_guess", body),
        "another body's": signed(hook["secret"], b"{}"),
        "a malformed one": {"X-Signature-256": "sha256=xyz"},
        "the secret as a bearer token": {"Authorization": f"Bearer {hook['secret']}"},
        "the owner's JWT": alice.headers,
    }
    for case, headers in refused.items():
        response = await deliver(http, hook, body, headers)
        assert (response.status_code, response.json()) == (401, UNAUTHENTICATED), case
    unknown = await http.post("/hooks/no-such-hook", content=body, headers=signed(hook["secret"], body))
    assert (unknown.status_code, unknown.json()) == (401, UNAUTHENTICATED)
    assert await triggered(http, alice, hook) == []


async def test_a_token_hook_takes_its_secret_as_bearer_token_only(http, alice):
    hook = await new_hook(http, alice, auth="token")
    body = b'{"name": "Tom"}'
    assert (await deliver(http, hook, body, signed(hook["secret"], body))).status_code == 401
    assert (await deliver(http, hook, body, {"Authorization": "Bearer whsec_guess"})).status_code == 401
    accepted = await deliver(http, hook, body, {"Authorization": f"Bearer {hook['secret']}"})
    assert accepted.status_code == 202, accepted.text
    job = await read_job(http, alice, accepted.json()["job_id"])
    assert "authorization" not in job["input"]["headers"]


async def test_a_redelivery_answers_the_job_of_the_first_and_starts_no_second(http, alice):
    hook = await new_hook(http, alice, delivery_id_header="X-GitHub-Delivery")
    body = b'{"name": "Ray"}'
    headers = {**signed(hook["secret"], body), "X-GitHub-Delivery": "d-72d3"}
    first = await deliver(http, hook, body, headers)
    again = await deliver(http, hook, body, headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    keyed = {**signed(hook["secret"], body), "Idempotency-Key": "k-1"}
    other = await deliver(http, hook, body, keyed)
    assert (
        (await deliver(http, hook, body, keyed)).json()["job_id"]
        == other.json()["job_id"]
        != first.json()["job_id"]
    )
    assert sorted(await triggered(http, alice, hook)) == sorted(
        {first.json()["job_id"], other.json()["job_id"]}
    )


async def test_a_body_over_the_limit_is_413_and_starts_nothing(http, alice):
    hook = await new_hook(http, alice)
    body = json.dumps({"name": "x" * MAX_BODY_BYTES}).encode()
    response = await deliver(http, hook, body, signed(hook["secret"], body))
    assert response.status_code == 413
    assert await triggered(http, alice, hook) == []


async def test_past_the_rate_limit_a_delivery_is_429_with_retry_after(http, alice):
    hook = await new_hook(http, alice, rate_limit_per_min=2)
    body = b'{"name": "Lim"}'
    assert (await deliver(http, hook, body, signed("whsec_guess", body))).status_code == 401, "not counted"
    for _ in range(2):
        assert (await deliver(http, hook, body, signed(hook["secret"], body))).status_code == 202
    limited = await deliver(http, hook, body, signed(hook["secret"], body))
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert len(await triggered(http, alice, hook)) == 2


async def test_rotation_refuses_the_old_secret_at_once_and_disabling_refuses_every_delivery(http, alice):
    hook = await new_hook(http, alice)
    body = b'{"name": "Rot"}'
    rotated = await http.post(f"/api/v1/webhooks/{hook['id']}/rotate", headers=alice.headers)
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    assert secret != hook["secret"]
    assert (await deliver(http, hook, body, signed(hook["secret"], body))).status_code == 401
    assert (await deliver(http, hook, body, signed(secret, body))).status_code == 202
    off = await http.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=alice.headers)
    assert off.status_code == 200 and off.json()["enabled"] is False and "secret" not in off.json()
    assert (await deliver(http, hook, body, signed(secret, body))).json() == UNAUTHENTICATED
    await http.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=alice.headers)
    assert (await deliver(http, hook, body, signed(secret, body))).status_code == 202
    read = (await http.get(f"/api/v1/webhooks/{hook['id']}", headers=alice.headers)).json()
    assert read["enabled"] and "secret" not in read and read["url"] == hook["url"]


async def test_a_deleted_hook_or_workflow_refuses_deliveries(http, alice):
    hook = await new_hook(http, alice)
    body = b'{"name": "Del"}'
    await http.delete(f"/api/v1/workflows/{hook['workflow_id']}", headers=alice.headers)
    assert (await deliver(http, hook, body, signed(hook["secret"], body))).json() == UNAUTHENTICATED
    deleted = await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert (await http.get(f"/api/v1/webhooks/{hook['id']}", headers=alice.headers)).status_code == 404
    assert (await deliver(http, hook, body, signed(hook["secret"], body))).status_code == 401


async def test_another_users_hooks_and_workflows_are_404_and_admins_see_everyones(http, alice, bob, admin):
    hook = await new_hook(http, alice)
    url = f"/api/v1/webhooks/{hook['id']}"
    for method, path in [("GET", url), ("PATCH", url), ("DELETE", url), ("POST", f"{url}/rotate")]:
        response = await http.request(
            method, path, json={} if method == "PATCH" else None, headers=bob.headers
        )
        assert response.status_code == 404, f"{method} {path}"
    on_alices = await http.post(f"/api/v1/workflows/{hook['workflow_id']}/webhooks", headers=bob.headers)
    assert on_alices.status_code == 404
    assert (await http.get("/api/v1/webhooks", headers=bob.headers)).json()["total"] == 0
    mine = (await http.get("/api/v1/webhooks", headers=alice.headers)).json()
    assert [item["id"] for item in mine["items"]] == [hook["id"]] and "secret" not in mine["items"][0]
    assert (await http.get(url, headers=admin.headers)).status_code == 200


async def test_a_rotation_made_through_another_process_holds_here_at_once(http, service, alice):
    """The receiver keeps no secret in memory: a secret replaced in the store by another gateway (here a
    second store on the same SQLite file, as another process would hold) is the one checked next."""
    store = service.runtime.store
    if not isinstance(store, SqliteStore):
        pytest.skip("the session gateway runs on MongoDB here; the SQLite file is what two processes share")
    hook = await new_hook(http, alice)
    body = b'{"name": "Far"}'
    other_gateway = SqliteStore(store.path)
    await other_gateway.start()
    try:
        sealed = service.app.state.hook_secrets.seal(alice.sub, hook["id"], "whsec_rotated_elsewhere")
        await other_gateway.update_webhook(hook["id"], WebhookChanges(sealed_secret=sealed))
    finally:
        await other_gateway.close()
    assert (await deliver(http, hook, body, signed(hook["secret"], body))).status_code == 401
    assert (await deliver(http, hook, body, signed("whsec_rotated_elsewhere", body))).status_code == 202
