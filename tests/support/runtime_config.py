"""A RuntimeConfig as the service's start would make one, for tests that build actors (or their parts)
without starting the whole service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.ray_runtime.runtime_config import RuntimeConfig
from config.resolved import Resolved
from config.settings import Settings


def runtime_config(
    data_dir: Path, redis_host: str, redis_port: int, max_active_jobs: int = 8, **settings: Any
) -> RuntimeConfig:
    """On the embedded store in `data_dir` and the Redis at `redis_host:redis_port`; `settings` by their
    environment names (NODE_PLUGINS=..., EVENT_STREAM_TTL_S=...), nothing read from the environment."""
    tree = Settings(_env_file=None, DATA_DIR=data_dir, **settings)
    return RuntimeConfig(
        settings=tree,
        resolved=Resolved.of(tree),
        redis_host=redis_host,
        redis_port=redis_port,
        max_active_jobs=max_active_jobs,
    )
