"""Helpers for the gateway tests: tokens, users, workflow definitions, SSE parsing, waiting for jobs."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from jose import jwt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

JWT_SECRET = "gateway-test-secret-0123456789abcdef"
OPERATOR_SECRETS: dict[str, Any] = {
    "operator_admin_key": "op-admin-only-7f3a9c",
    "team_key": {"value": "op-team-value-51e2", "roles": ["team-x"]},
    "carol_key": {"value": "op-carol-value-83d1", "subjects": ["carol-granted"]},
}
"""SECRETS_FILE of the session gateway: one admins-only entry, one for a role, one for a subject."""
TERMINAL = {"completed", "failed", "cancelled"}


def make_token(
    sub: str | None,
    *,
    roles: list[str] | None = None,
    expires_in: float | None = 300,
    algorithm: str = "HS256",
    key: str = JWT_SECRET,
) -> str:
    claims: dict[str, Any] = {}
    if sub is not None:
        claims["sub"] = sub
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    if roles is not None:
        claims["roles"] = roles
    return jwt.encode(claims, key, algorithm=algorithm)


def unsigned_token(sub: str) -> str:
    """A token with `alg: none` and no signature, as an attacker would send it."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': int(time.time()) + 300})}."


@dataclass
class User:
    sub: str
    roles: list[str] = field(default_factory=list)
    key: str = JWT_SECRET
    """The key its tokens are signed with: the one the service under test checks them with."""

    @property
    def token(self) -> str:
        return make_token(self.sub, roles=self.roles, key=self.key)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_user(name: str, roles: list[str] | None = None, key: str = JWT_SECRET) -> User:
    return User(f"{name}-{uuid.uuid4().hex[:8]}", roles or [], key)


def linear_definition(name: str = "greeting") -> dict[str, Any]:
    """start -> transform -> end: the transform greets `input.name`."""
    return {
        "name": name,
        "description": "start -> transform -> end",
        "nodes": [
            {"id": "start", "type": "start", "config": {}},
            {"id": "greet", "type": "transform", "config": {"template": {"text": "Hello {{input.name}}"}}},
            {"id": "end", "type": "end", "config": {}},
        ],
        "edges": [{"source": "start", "target": "greet"}, {"source": "greet", "target": "end"}],
    }


async def create_workflow(
    http: httpx.AsyncClient, user: User, definition: dict[str, Any] | None = None
) -> dict:
    response = await http.post(
        "/api/v1/workflows", json=definition or linear_definition(), headers=user.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def execute(http: httpx.AsyncClient, user: User, workflow_id: str, data: dict[str, Any]) -> dict:
    response = await http.post(f"/api/v1/workflows/{workflow_id}/execute", json=data, headers=user.headers)
    assert response.status_code == 202, response.text
    return response.json()


async def wait_for_job(http: httpx.AsyncClient, user: User, job_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout_s} s"
        await asyncio.sleep(0.05)


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: dict[str, Any]


async def read_sse(lines: AsyncIterator[str], limit: int | None = None) -> list[SseEvent]:
    """Parse Server-Sent Events from `response.aiter_lines()` until the stream ends, or until `limit`
    events were read (the same iterator then goes on reading)."""
    events: list[SseEvent] = []
    fields: dict[str, str] = {}
    async for line in lines:
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            events.append(SseEvent(fields.get("id"), fields.get("event"), json.loads(fields["data"])))
            if limit is not None and len(events) >= limit:
                break
        fields = {}
    return events


@dataclass
class SocketResult:
    messages: list[dict[str, Any]]
    close_code: int | None
    close_reason: str
    handshake_headers: dict[str, str] = field(default_factory=dict)


async def read_socket(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    until_type: str | None = None,
    timeout_s: float = 30,
    connected: asyncio.Event | None = None,
) -> SocketResult:
    """Read a WebSocket's JSON messages until the server closes it, or until a message of `until_type`
    (then the client closes it). `connected` is set once the server has accepted the socket."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s), connect(url, additional_headers=headers or {}) as socket:
        if connected is not None:
            connected.set()
        try:
            async for raw in socket:
                messages.append(json.loads(raw))
                if until_type is not None and messages[-1]["type"] == until_type:
                    break
        except ConnectionClosedError:
            pass
    handshake = dict(socket.response.headers) if socket.response is not None else {}
    return SocketResult(messages, socket.close_code, socket.close_reason or "", handshake)
