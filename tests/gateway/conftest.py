"""One gateway for the whole session: real local Ray, the embedded SQLite store and the embedded Redis,
served by uvicorn on a loopback port in the session's event loop (pyproject runs every test in that
loop). Starting Ray costs ~5 s, so every gateway test shares it; each test makes its own users, so
tests never see each other's data."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from actors.bootstrap import ServiceRuntime
from config.settings import Settings
from gateway.main import create_app
from tests.gateway.support import JWT_SECRET, OPERATOR_SECRETS, User, new_user

MAX_BODY_BYTES = 256 * 1024
KEEPALIVE_S = 1.0
STARTUP_TIMEOUT_S = 90


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
        SECRETS_FILE=secrets_file,
        RAY_DASHBOARD=False,
        RAY_NAMESPACE=f"gateway-test-{uuid.uuid4().hex[:8]}",
        MAX_ACTIVE_JOBS=2,
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
    app = create_app(gateway_settings, configure_logs=False)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds ~40 ms)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the gateway stopped while starting")
            await asyncio.sleep(0.05)
    yield Service(app, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")
    server.should_exit = True
    await serving
    listener.close()


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
