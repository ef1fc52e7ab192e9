"""One real service for every guide's examples: the gateway on uvicorn on a loopback port, on the session's
Ray, with the embedded SQLite store and Redis; beside it the OpenAI-compatible test server as
MODEL_SERVICE_URL and the httpbin stand-in, reached by HTTP nodes (so private addresses are allowed here).
The example node plugin of node-types.md is loaded through NODE_PLUGINS."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from config.settings import Settings
from tests.docs.httpbin import HTTPBIN_URL, HttpbinServer
from tests.docs.runner import DocService
from tests.gateway.support import make_token
from tests.support import ray_test_api
from tests.support.live_gateway import serve_gateway
from tests.support.openai_server import OpenAITestServer

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
JWT_SECRET = "docs-example-secret-0123456789abcdef"
EXAMPLE_PLUGIN = "docs.examples.sentiment_plugin.sentiment_plugin:SentimentNode"
SECRETS = {"httpbin_token": {"value": "hb-secret-token-42", "subjects": ["alice"]}}
"""The operator's SECRETS_FILE: one entry, granted to the guides' user `alice`."""
MODEL_JSON_REPLY = {"category": "technical", "confidence": 0.92}
TOKEN_LIFETIME_S = 3600


@pytest.fixture(scope="session")
def model_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(json_reply=MODEL_JSON_REPLY, tool_rounds=(1, 2)) as server:
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
        HOST="0.0.0.0",  # a deployment, not the embedded development mode (no dev tokens)
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
        MODEL_SERVICE_URL=model_server.url,
        HTTP_ALLOW_PRIVATE_NETWORKS=True,
    )
    ray_test_api.SESSION_NAMESPACES.add(settings.ray.namespace)
    async with serve_gateway(settings) as (base_url, _app):
        yield DocService(
            base_url=base_url,
            token=make_token("alice", expires_in=TOKEN_LIFETIME_S, key=JWT_SECRET),
            jwt_secret=JWT_SECRET,
            replacements={HTTPBIN_URL: httpbin.url},
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def docs_http(docs_service: DocService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=docs_service.base_url, timeout=30) as client:
        yield client
