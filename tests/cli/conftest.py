"""The gateway the command-line tests talk to: real loopback HTTP (REST and SSE) on the session's Ray, the
embedded SQLite store and the embedded Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import uvicorn

from config.settings import Settings
from gateway.main import create_app
from tests.cli.support import JWT_SECRET
from tests.support.openai_server import OpenAITestServer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(ray_cluster, tmp_path_factory) -> AsyncIterator[str]:
    """A gateway whose LLM nodes call the OpenAI-compatible test server; yields its base URL."""
    with OpenAITestServer(latency_s=0.1) as llm, pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_SERVICE_URL", llm.url)
        settings = Settings(
            _env_file=None,
            DATA_DIR=tmp_path_factory.mktemp("cli-gateway"),
            RAY_DASHBOARD=False,
            RAY_NAMESPACE=f"cli-gateway-{uuid.uuid4().hex[:8]}",
            MAX_ACTIVE_JOBS=2,
            JOB_ACTOR_MODE="reuse",  # a warm runner: a dedicated actor per job costs a process start
            WARM_POOL_SIZE=1,
            EXECUTOR_POOL_SIZE=1,
            JWT_SECRET=JWT_SECRET,
            EVENT_KEEPALIVE_S=1.0,
            LOG_LEVEL="WARNING",
        )
        app = create_app(settings, configure_logs=False)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None))
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        async with asyncio.timeout(90):
            while not server.started:
                assert not serving.done(), "the gateway stopped while starting"
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        server.should_exit = True
        await serving
        listener.close()
