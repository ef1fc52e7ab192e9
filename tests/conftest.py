"""Fixtures shared across suites. One real local Ray instance serves the whole test session; the Ray-free
job runner's tests (tests/actors, tests/nodes) share `services`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from actors.job_loop.job_runner import RunnerServices
from actors.job_loop.launcher import InProcessLauncher
from actors.ray_runtime import ray_api
from nodes.registry import BUILTIN_NODE_TYPES, NodeRegistry
from nodes.settings import NodeSettings
from storage.embedded_redis import EmbeddedRedis
from storage.redis_bus import RedisStreamBus
from storage.sqlite_store import SqliteStore
from tests.support import ray_test_api
from tests.support.runner_jobs import CountedNode, FlakyNode, KeyedNode, SleepNode, StepperNode

TEST_RAY_NAMESPACE = "workflow-service-tests"
TEST_JOB_SLOTS = 48
REPORTER_INTERVAL_MS = 60_000
"""How often the dashboard agent reads every worker's CPU and memory: every 5 s by default, which with the
hundred-odd worker processes a session starts costs a tenth of a core; no test reads those figures."""


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ray_api.ClusterInfo]:
    """A local Ray instance for the session (4-6 s to start here), with the dashboard so tests can read
    its state API; each service runtime built on it uses its own namespace, so their managers and
    actors never meet."""
    os.environ.setdefault("REPORTER_UPDATE_INTERVAL_MS", str(REPORTER_INTERVAL_MS))
    info = ray_api.init(None, TEST_RAY_NAMESPACE, job_slots=TEST_JOB_SLOTS, include_dashboard=True)
    yield info
    if info.started_here:
        ray_api.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _sweep_module_actors() -> Iterator[None]:
    """After each module: kill the actors its service runtimes left on the session's Ray. A runtime's
    close leaves them (they are detached, for gateway restarts), and a job manager, executor and limiter
    left idle from every earlier test would keep their loops running on these 2 cores for the rest of the
    session."""
    yield
    ray_test_api.kill_named_actors_outside({TEST_RAY_NAMESPACE, *ray_test_api.SESSION_NAMESPACES})


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def services(tmp_path: Path, redis_server: EmbeddedRedis) -> AsyncIterator[RunnerServices]:
    store = SqliteStore(tmp_path / "workflow.db")
    await store.start()
    bus = RedisStreamBus(redis_server.host, redis_server.port)
    await bus.start()
    registry = NodeRegistry([*BUILTIN_NODE_TYPES, FlakyNode, SleepNode, KeyedNode, StepperNode, CountedNode])
    yield RunnerServices(
        store=store,
        bus=bus,
        registry=registry,
        launcher=InProcessLauncher(),
        node_settings=NodeSettings(),
        secrets={"api_key": "sk-very-secret"},
        jitter=lambda delay: delay,
    )
    await bus.close()
    await store.close()
