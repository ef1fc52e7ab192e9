"""JWT: one pinned algorithm, exp and sub required; every failure answers 401 with a challenge."""

from __future__ import annotations

import pytest

from tests.gateway.support import create_workflow, make_token, unsigned_token

PROTECTED = "/api/v1/workflows"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param({}, "missing bearer token", id="missing"),
        pytest.param({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "missing bearer token", id="not-bearer"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, "malformed token", id="malformed"),
        pytest.param(
            {"Authorization": f"Bearer {make_token('alice', key='another-secret')}"},
            "invalid token",
            id="bad-signature",
        ),
        pytest.param(
            {"Authorization": f"Bearer {make_token('alice', expires_in=-60)}"}, "token expired", id="expired"
        ),
        pytest.param(
            {"Authorization": f"Bearer {unsigned_token('alice')}"}, "'none' is not accepted", id="alg-none"
        ),
        pytest.param(
            {"Authorization": f"Bearer {make_token('alice', algorithm='HS512')}"},
            "'HS512' is not accepted",
            id="wrong-algorithm",
        ),
        pytest.param({"Authorization": f"Bearer {make_token('alice', expires_in=None)}"}, "exp", id="no-exp"),
        pytest.param({"Authorization": f"Bearer {make_token(None)}"}, "sub", id="no-sub"),
    ],
)
async def test_bad_credentials_answer_401_with_a_challenge(http, headers, detail):
    response = await http.get(PROTECTED, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert detail in body["detail"] and body["errors"] == []
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == bool(
        headers.get("Authorization", "").startswith("Bearer")
    )


async def test_a_valid_token_is_accepted_and_its_subject_owns_what_it_creates(http, alice):
    workflow = await create_workflow(http, alice)
    assert workflow["owner"] == alice.sub


async def test_the_token_query_parameter_is_only_for_event_streams(http, alice):
    response = await http.get(PROTECTED, params={"token": alice.token})
    assert response.status_code == 401


async def test_a_roles_claim_must_be_a_list_of_strings(http):
    token = make_token("alice", roles=[1, 2])  # type: ignore[list-item]
    response = await http.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "roles" in response.json()["detail"]


async def test_every_api_operation_requires_a_token_and_only_health_ping_metrics_do_not(http, alice):
    """... and the development token route, which mints them (and answers 404 outside that mode); and the
    webhook receiver, which a token does not open: only the hook's secret does."""
    schema = (await http.get("/openapi.json")).json()
    public = {"/health", "/ping", "/metrics", "/api/v1/dev/token"}
    by_hook_secret = {"/hooks/{hook_id}"}
    checked = 0
    for path, operations in schema["paths"].items():
        concrete = (
            path.replace("{workflow_id}", "w1")
            .replace("{job_id}", "j1")
            .replace("{node_type}", "start")
            .replace("{name}", "api_key")
            .replace("{version}", "1")
            .replace("{hook_id}", "h1")
        )
        for method in operations:
            response = await http.request(method.upper(), concrete, json={})
            if path in by_hook_secret:
                with_token = await http.request(method.upper(), concrete, json={}, headers=alice.headers)
                assert response.status_code == with_token.status_code == 401, f"{method} {path}"
            elif path in public:
                assert response.status_code != 401, f"{method} {path}"
            else:
                assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
                checked += 1
    assert checked == 36
