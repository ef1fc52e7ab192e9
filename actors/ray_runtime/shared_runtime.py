"""The parts of the runtime `serve --workers N` starts once, in its serving process, for its N gateway
workers to join rather than each start their own: a local Ray instance when RAY_ADDRESS is unset, the
embedded Redis server when REDIS_HOST is. The serving process owns them: it stops them after its last
worker has ended.

The store needs nothing of the kind: MongoDB is a server, and the embedded SQLite file is one file that
every worker (and every actor) opens, its migration one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.ray_runtime import ray_api
from actors.ray_runtime.cluster_start import start_ray
from config.resolved import Resolved
from config.settings import Settings
from storage.bus_factory import start_embedded_redis
from storage.embedded_redis import EmbeddedRedis


@dataclass(frozen=True)
class SharedParts:
    """Where a worker finds the shared parts (pickled to it); nothing set: it starts what it needs itself."""

    ray_address: str | None = None
    redis_host: str | None = None
    redis_port: int = 0

    def redis_address(self, settings: Settings) -> tuple[str | None, int]:
        """The embedded Redis of the serving process, else REDIS_HOST's (None: start one here)."""
        if self.redis_host is not None:
            return self.redis_host, self.redis_port
        return settings.events.redis_host, settings.events.redis_port


class SharedRuntime:
    def __init__(
        self, cluster: ray_api.ClusterInfo | None, redis: EmbeddedRedis | None, parts: SharedParts
    ) -> None:
        self._cluster = cluster
        self._redis = redis
        self.parts = parts

    @classmethod
    def start(cls, settings: Settings, resolved: Resolved) -> SharedRuntime:
        """Start what the settings leave embedded: Redis first, as a single gateway does."""
        redis = None
        if settings.events.redis_host is None:
            password = settings.events.redis_password
            redis = start_embedded_redis(resolved.data_dir, password.get_secret_value() if password else None)
        try:
            cluster = start_ray(settings, None)[0] if settings.ray.address is None else None
        except BaseException:
            if redis is not None:
                redis.stop()
            raise
        parts = SharedParts(
            ray_address=cluster.address if cluster else None,
            redis_host=redis.host if redis else None,
            redis_port=redis.port if redis else 0,
        )
        return cls(cluster, redis, parts)

    def __enter__(self) -> SharedRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cluster is not None and self._cluster.started_here:
            ray_api.shutdown()
        if self._redis is not None:
            self._redis.stop()
