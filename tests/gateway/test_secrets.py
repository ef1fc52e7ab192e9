"""Secrets belong to their owner: each user's own (write-only, encrypted at rest), and the operator's only
where SECRETS_FILE grants them. Every attack here ran against the gateway before per-owner secrets and
read a value it should not have."""

from __future__ import annotations

import stat
from typing import Any

import pytest

from tests.gateway.support import (
    OPERATOR_SECRETS,
    create_workflow,
    execute,
    new_user,
    wait_for_job,
)

LEAKY_FORMS = [
    "{{secrets.NAME}}",
    "{{secrets.NAME[::-1]}}",
    "{{ secrets.NAME | list }}",
    "{{ secrets.NAME | lower }}",
]
ADMIN_ONLY_VALUE = OPERATOR_SECRETS["operator_admin_key"]


def transform_workflow(template: Any) -> dict[str, Any]:
    return {
        "name": "reads a secret",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {"id": "show", "type": "transform", "config": {"template": {"value": template}}},
        ],
        "edges": [{"source": "start", "target": "show"}],
    }


async def put_secret(http, user, name: str, value: str) -> Any:
    return await http.put(f"/api/v1/secrets/{name}", json={"value": value}, headers=user.headers)


async def run_job(http, user, template: Any) -> dict[str, Any]:
    workflow = await create_workflow(http, user, transform_workflow(template))
    job = await execute(http, user, workflow["id"], {})
    return await wait_for_job(http, user, job["id"])


async def node_test(http, user, template: Any) -> Any:
    body = {"config": {"template": {"value": template}}}
    return await http.post("/api/v1/nodes/transform/test", json=body, headers=user.headers)


@pytest.mark.parametrize("form", LEAKY_FORMS)
async def test_the_node_test_route_never_hands_a_user_an_operator_secret_for_admins(http, alice, form):
    response = await node_test(http, alice, form.replace("NAME", "operator_admin_key"))
    assert response.status_code == 422, response.text
    assert "no secret named 'operator_admin_key'" in response.json()["detail"]
    for value in (ADMIN_ONLY_VALUE, ADMIN_ONLY_VALUE[::-1], ADMIN_ONLY_VALUE.lower()):
        assert value not in response.text


async def test_an_unknown_secret_names_that_one_and_lists_no_other(http, alice):
    response = await node_test(http, alice, "{{secrets.nope}}")
    assert response.status_code == 422
    assert "'nope'" in response.text
    assert all(name not in response.text for name in OPERATOR_SECRETS)


@pytest.mark.parametrize("form", LEAKY_FORMS)
async def test_a_job_cannot_read_another_tenants_secret_in_any_form(http, alice, bob, form):
    bob_value = "bob-private-value-0c41"
    assert (await put_secret(http, bob, "api_key", bob_value)).status_code == 201
    job = await run_job(http, alice, form.replace("NAME", "api_key"))
    assert job["status"] == "failed"
    error = job["nodes"]["show"]["error"]
    assert error["type"] == "template_error"
    assert "no secret named 'api_key'" in error["message"]
    text = str(job)
    assert bob_value not in text and bob_value[::-1] not in text


@pytest.mark.parametrize("form", LEAKY_FORMS)
async def test_a_job_of_a_user_cannot_read_an_operator_secret_for_admins(http, alice, form):
    job = await run_job(http, alice, form.replace("NAME", "operator_admin_key"))
    assert job["status"] == "failed", job
    assert "no secret named 'operator_admin_key'" in job["nodes"]["show"]["error"]["message"]
    assert ADMIN_ONLY_VALUE not in str(job) and ADMIN_ONLY_VALUE[::-1] not in str(job)


async def test_a_users_own_secret_reaches_their_job_and_is_masked_in_its_output(http, alice):
    value = "alice-own-value-9b77"
    await put_secret(http, alice, "api_key", value)
    job = await run_job(http, alice, "Bearer {{secrets.api_key}}")
    assert job["status"] == "completed", job
    assert job["nodes"]["show"]["output"] == {"value": "Bearer ***"}
    response = await node_test(http, alice, "Bearer {{secrets.api_key}}")
    assert response.status_code == 200 and response.json()["output"] == {"value": "Bearer ***"}


async def test_a_users_own_secret_shadows_an_operator_secret_of_the_same_name(http):
    member = new_user("member", roles=["team-x"])
    await put_secret(http, member, "team_key", "member-own-team-key-11")
    response = await node_test(http, member, "{{ secrets.team_key == 'member-own-team-key-11' }}")
    assert response.json()["output"] == {"value": True}, response.text


@pytest.mark.parametrize(
    ("user", "name"),
    [
        (new_user("member", roles=["team-x"]), "team_key"),
        (new_user("root", roles=["admin"]), "operator_admin_key"),
    ],
    ids=["by-role", "admin"],
)
async def test_an_operator_secret_reaches_the_jobs_it_is_granted_to(http, user, name):
    value = (
        OPERATOR_SECRETS[name] if isinstance(OPERATOR_SECRETS[name], str) else OPERATOR_SECRETS[name]["value"]
    )
    job = await run_job(http, user, f"{{{{ secrets.{name} == '{value}' }}}}")
    assert job["status"] == "completed" and job["nodes"]["show"]["output"] == {"value": True}, job


async def test_an_operator_secret_granted_to_a_subject_reaches_that_subject_only(http):
    carol = new_user("carol")
    carol.sub = "carol-granted"
    expected = OPERATOR_SECRETS["carol_key"]["value"]
    granted = await node_test(http, carol, f"{{{{ secrets.carol_key == '{expected}' }}}}")
    assert granted.json()["output"] == {"value": True}, granted.text
    other = await node_test(http, new_user("carol"), "{{ secrets.carol_key }}")
    assert other.status_code == 422 and expected not in other.text


async def test_secrets_are_written_listed_by_name_and_deleted_never_read_back(http, alice, bob, admin):
    value = "write-only-value-4d2e"
    created = await put_secret(http, alice, "db_password", value)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "db_password" and value not in created.text
    replaced = await put_secret(http, alice, "db_password", value + "-2")
    assert replaced.status_code == 200 and replaced.json()["created_at"] == created.json()["created_at"]

    listed = await http.get("/api/v1/secrets", headers=alice.headers)
    assert listed.status_code == 200 and value not in listed.text
    assert {"name": "db_password", "source": "user"}.items() <= listed.json()[0].items()
    for other in (bob, admin):
        names = [item["name"] for item in (await http.get("/api/v1/secrets", headers=other.headers)).json()]
        assert "db_password" not in names

    assert (await http.delete("/api/v1/secrets/db_password", headers=bob.headers)).status_code == 404
    assert (await http.delete("/api/v1/secrets/db_password", headers=alice.headers)).status_code == 204
    assert (await http.delete("/api/v1/secrets/db_password", headers=alice.headers)).status_code == 404


async def test_the_listing_shows_the_operator_secrets_granted_to_the_caller_by_name(http):
    member = new_user("member", roles=["team-x"])
    listed = (await http.get("/api/v1/secrets", headers=member.headers)).json()
    assert listed == [{"name": "team_key", "source": "operator", "created_at": None, "updated_at": None}]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("has-dash", {"value": "v"}),
        ("9starts_with_digit", {"value": "v"}),
        ("ok", {"value": ""}),
        ("ok", {"value": "x" * 70_000}),
        ("ok", {"value": "v", "owner": "bob"}),
        ("ok", {}),
    ],
)
async def test_a_bad_secret_is_refused_with_422(http, alice, name, body):
    response = await http.put(f"/api/v1/secrets/{name}", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text


async def test_secrets_need_a_token(http):
    assert (await http.get("/api/v1/secrets")).status_code == 401
    assert (await http.put("/api/v1/secrets/x", json={"value": "v"})).status_code == 401


async def test_a_secret_is_encrypted_at_rest_under_a_key_only_the_service_can_read(http, alice, service):
    value = "at-rest-plaintext-6a1f"
    await put_secret(http, alice, "stored", value)
    data_dir = service.runtime.runtime.resolved.data_dir
    for path in data_dir.glob("workflow.db*"):
        assert value.encode() not in path.read_bytes(), path
    key_file = data_dir / "secrets-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
