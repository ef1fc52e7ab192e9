"""One gateway for the whole session: real local Ray, the embedded SQLite store and the embedded Redis,
served by uvicorn on a loopback port in the session's event loop (pyproject runs every test in that
loop). Starting Ray costs ~5 s, so every gateway test shares it; each test makes its own users, so
tests never see each other's data."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from actors.ray_runtime.bootstrap import ServiceRuntime
from config.settings import Settings
from tests.gateway.support import JWT_SECRET, OPERATOR_SECRETS, User, new_user
from tests.support import ray_test_api
from tests.support.live_gateway import serve_gateway

MAX_BODY_BYTES = 256 * 1024
KEEPALIVE_S = 1.0


@dataclass
class Service:
    app: FastAPI
    base_url: str
    ws_url: str

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime


@pytest.fixture(scope="session")
def gateway_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("gateway-data")
    secrets_file = data_dir / "operator-secrets.json"
    secrets_file.write_text(json.dumps(OPERATOR_SECRETS), encoding="utf-8")
    return Settings(
        _env_file=None,
        DATA_DIR=data_dir,
        HOST="0.0.0.0",  # a deployment, not the embedded development mode (no dev tokens)
        SECRETS_FILE=secrets_file,
        RAY_DASHBOARD=False,
        RAY_NAMESPACE=f"gateway-test-{uuid.uuid4().hex[:8]}",
        MAX_ACTIVE_JOBS=2,
        JOB_ACTOR_MODE="reuse",  # warm runners: a dedicated actor per job costs a process start here
        WARM_POOL_SIZE=1,
        EXECUTOR_POOL_SIZE=1,
        JWT_SECRET=JWT_SECRET,
        JWT_ALGORITHM="HS256",
        MAX_BODY_BYTES=MAX_BODY_BYTES,
        EVENT_KEEPALIVE_S=KEEPALIVE_S,
        LOG_LEVEL="WARNING",
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def service(ray_cluster: object, gateway_settings: Settings) -> AsyncIterator[Service]:
    """On the session's Ray (tests/conftest.py), so that it offers job slots for every suite's gateway: a
    gateway that started Ray itself would offer only the few its own settings need."""
    ray_test_api.SESSION_NAMESPACES.add(gateway_settings.ray.namespace)
    async with serve_gateway(gateway_settings) as (base_url, app):
        yield Service(app, base_url, base_url.replace("http", "ws", 1))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def alice() -> User:
    return new_user("alice")


@pytest.fixture
def bob() -> User:
    return new_user("bob")


@pytest.fixture
def admin() -> User:
    return new_user("root", roles=["admin"])
