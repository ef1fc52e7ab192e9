"""Fixtures of the runtime tests on real Ray: service runtimes started on the session's cluster, each with
its own namespace and data directory, and everything they started ended afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from tests.support.ray_jobs import RuntimeFactory, settings_for


@pytest.fixture
async def make_runtime(ray_cluster, tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    started: list[ServiceRuntime] = []

    async def make(**overrides: Any) -> ServiceRuntime:
        runtime = await start_service_runtime(settings_for(tmp_path / f"data{len(started)}", **overrides))
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        for name in ray_api.named_actors(runtime.runtime.namespace):
            handle = ray_api.get_actor(name, runtime.runtime.namespace)
            if handle is not None:
                ray_api.kill(handle)
        await runtime.close()
