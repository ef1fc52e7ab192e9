"""Choose the EventBus from the settings: the configured Redis, or an embedded Redis server when none is."""

from __future__ import annotations

from pathlib import Path

from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus
from storage.redis_bus import DEFAULT_JOB_STREAM_TTL_S, RedisStreamBus

EMBEDDED_REDIS_SUBDIR = "redis"


def build_event_bus(
    redis_host: str | None,
    redis_port: int,
    redis_password: str | None,
    data_dir: Path,
    job_stream_ttl_s: int = DEFAULT_JOB_STREAM_TTL_S,
) -> tuple[EventBus, EmbeddedRedis | None]:
    """A bus on REDIS_HOST:REDIS_PORT, or, when no host is set, on an embedded server started here with
    its data in `data_dir/redis` on a free loopback port (REDIS_PORT is not used: Ray's head may hold
    6379). The caller awaits `bus.start()`, stops the embedded server at shutdown, and hands processes
    that must reach the same bus (Ray actors) the server's `host` and `port`. A job's stream expires
    `job_stream_ttl_s` seconds after the job ends (0: never)."""
    if redis_host and redis_host.strip():
        bus = RedisStreamBus(
            redis_host.strip(), redis_port, redis_password, job_stream_ttl_s=job_stream_ttl_s
        )
        return bus, None
    embedded = start_embedded_redis(data_dir, redis_password)
    bus = RedisStreamBus(embedded.host, embedded.port, redis_password, job_stream_ttl_s=job_stream_ttl_s)
    return bus, embedded


def start_embedded_redis(data_dir: Path, redis_password: str | None) -> EmbeddedRedis:
    """The embedded Redis server of DATA_DIR, started; the caller stops it."""
    embedded = EmbeddedRedis(Path(data_dir) / EMBEDDED_REDIS_SUBDIR, password=redis_password)
    embedded.start()
    return embedded
