"""One real service for every guide's examples: the gateway on uvicorn on a loopback port, on the session's
Ray, with the embedded SQLite store and Redis; beside it the OpenAI-compatible test server as
MODEL_SERVICE_URL and the httpbin stand-in, reached by HTTP nodes (so private addresses are allowed here).
The example node plugin of node-types.md is loaded through NODE_PLUGINS."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn

from config.settings import Settings
from gateway.main import create_app
from tests.docs.httpbin import HTTPBIN_URL, HttpbinServer
from tests.docs.runner import DocService
from tests.gateway.support import make_token
from tests.support.openai_server import OpenAITestServer

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
JWT_SECRET = "docs-example-secret-0123456789abcdef"
EXAMPLE_PLUGIN = "docs.examples.sentiment_plugin.sentiment_plugin:SentimentNode"
SECRETS = {"httpbin_token": {"value": "hb-secret-token-42", "subjects": ["alice"]}}
"""The operator's SECRETS_FILE: one entry, granted to the guides' user `alice`."""
MODEL_JSON_REPLY = {"category": "technical", "confidence": 0.92}
STARTUP_TIMEOUT_S = 90
TOKEN_LIFETIME_S = 3600
GRACEFUL_SHUTDOWN_S = 5
"""A /ws/workflow handler whose client has left can stay stuck cancelling its Redis subscription; uvicorn
then cancels it after this long instead of waiting for it forever."""


@pytest.fixture(scope="session")
def model_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(json_reply=MODEL_JSON_REPLY) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def httpbin() -> AsyncIterator[HttpbinServer]:
    server = await HttpbinServer().start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def docs_service(
    ray_cluster: object,
    model_server: OpenAITestServer,
    httpbin: HttpbinServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[DocService]:
    data_dir = tmp_path_factory.mktemp("docs-service")
    secrets_file = data_dir / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS), encoding="utf-8")
    settings = Settings(
        _env_file=None,
        DATA_DIR=data_dir,
        RAY_DASHBOARD=False,
        RAY_NAMESPACE=f"docs-test-{uuid.uuid4().hex[:8]}",
        JOB_ACTOR_MODE="reuse",
        MAX_ACTIVE_JOBS=4,
        WARM_POOL_SIZE=2,
        EXECUTOR_POOL_SIZE=1,
        JWT_SECRET=JWT_SECRET,
        EVENT_KEEPALIVE_S=1.0,
        LOG_LEVEL="WARNING",
        SECRETS_FILE=secrets_file,
        NODE_PLUGINS=EXAMPLE_PLUGIN,
    )
    app = create_app(settings, configure_logs=False)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    # The node settings are read from the environment once, while the service starts.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_SERVICE_URL", model_server.url)
        env.setenv("HTTP_ALLOW_PRIVATE_NETWORKS", "true")
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError("the service stopped while starting")
                await asyncio.sleep(0.05)
    yield DocService(
        base_url=f"http://127.0.0.1:{port}",
        token=make_token("alice", expires_in=TOKEN_LIFETIME_S, key=JWT_SECRET),
        jwt_secret=JWT_SECRET,
        replacements={HTTPBIN_URL: httpbin.url},
    )
    server.should_exit = True
    await serving
    listener.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def docs_http(docs_service: DocService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=docs_service.base_url, timeout=30) as client:
        yield client
