"""POST /api/v1/dev/token on a gateway in the embedded development mode: a token for the typed name that
the service accepts, never with roles, and only for requests that name a loopback host (a page of another
site re-pointed at 127.0.0.1 by DNS rebinding names its own host and origin, and is refused)."""

from __future__ import annotations

import httpx
import pytest
from jose import jwt

from tests.ui.conftest import JWT_SECRET


@pytest.fixture
async def http(ui_service):
    async with httpx.AsyncClient(base_url=ui_service.base_url, timeout=30) as client:
        yield client


async def test_a_development_token_is_accepted_and_carries_no_roles(http):
    answer = await http.post("/api/v1/dev/token", json={"sub": "dev.user@example"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["sub"], body["token_type"]) == ("dev.user@example", "bearer")
    claims = jwt.decode(body["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "dev.user@example" and "roles" not in claims
    assert claims["exp"] - claims["iat"] == 8 * 3600
    listed = await http.get("/api/v1/workflows", headers={"Authorization": f"Bearer {body['token']}"})
    assert listed.status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"sub": "alice", "roles": ["admin"]}, {"sub": ""}, {"sub": "a b"}, {"sub": "x" * 129}, {}],
)
async def test_roles_and_bad_names_are_refused(http, body):
    answer = await http.post("/api/v1/dev/token", json=body)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example:8001"},
        {"Host": "127.0.0.1.attacker.example"},
        {"Origin": "http://attacker.example:8001"},
        {"Origin": "null"},
    ],
)
async def test_a_request_that_does_not_name_loopback_gets_404(http, headers):
    answer = await http.post("/api/v1/dev/token", json={"sub": "alice"}, headers=headers)
    assert answer.status_code == 404
    assert "embedded development mode" in answer.json()["detail"]


@pytest.mark.parametrize("host", ["localhost:8001", "127.0.0.2", "[::1]:8001"])
async def test_loopback_names_are_accepted(http, host):
    answer = await http.post(
        "/api/v1/dev/token", json={"sub": "alice"}, headers={"Host": host, "Origin": f"http://{host}"}
    )
    assert answer.status_code == 200, answer.text
