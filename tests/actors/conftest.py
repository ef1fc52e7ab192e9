"""Fixtures of the runtime tests on real Ray: service runtimes started on the session's cluster, each with
its own namespace and data directory, and everything they started ended afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from tests.support.ray_jobs import RuntimeFactory, end_runtime, settings_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_runtime(
    ray_cluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceRuntime]:
    """One runtime (default test settings) for the tests of a module that need nothing of their own and
    harm nothing: starting one and warming its runner costs seconds here."""
    runtime = await start_service_runtime(settings_for(tmp_path_factory.mktemp("shared-runtime")))
    yield runtime
    await end_runtime(runtime)


@pytest.fixture
async def make_runtime(ray_cluster, tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    started: list[ServiceRuntime] = []

    async def make(**overrides: Any) -> ServiceRuntime:
        runtime = await start_service_runtime(settings_for(tmp_path / f"data{len(started)}", **overrides))
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await end_runtime(runtime)
