"""What every actor needs to reach the same store, bus and cluster: the service's settings tree whole,
with what was worked out from it once at start (actors/ray_runtime/bootstrap.py), pickled to each actor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from config.log_setup import configure_logging
from config.resolved import Resolved
from config.settings import Settings
from nodes.registry import NodeRegistry, default_registry
from storage.bus_factory import build_event_bus
from storage.embedded_redis import EmbeddedRedis
from storage.protocols import EventBus, SecretStore, Store
from storage.secret_cipher import SecretCipher
from storage.secret_vault import SecretVault
from storage.store_factory import build_store


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    settings: Settings
    resolved: Resolved
    redis_host: str
    """The Redis the bus uses: REDIS_HOST, or the embedded server the service started."""
    redis_port: int = Field(ge=1, le=65535)
    max_active_jobs: int = Field(ge=1)
    """MAX_ACTIVE_JOBS, or what the cluster offered at start when it is 0."""
    follows_cluster: bool = False
    """The job manager follows the cluster's capacity as nodes come and go (MAX_ACTIVE_JOBS is 0)."""
    cluster_autoscales: bool = False
    """The service joined a cluster (RAY_ADDRESS), whose autoscaler may add nodes for pending work; a local
    instance has only the node it has."""

    @property
    def namespace(self) -> str:
        """The Ray namespace of every actor of the service."""
        return self.settings.ray.namespace

    def configure_process_logging(self) -> None:
        configure_logging(self.settings.logging.level, self.settings.logging.format)

    def registry(self) -> NodeRegistry:
        return default_registry(self.settings.jobs.node_plugin_paths)

    def secret_vault(self, store: SecretStore) -> SecretVault:
        """Where a job's {{secrets.NAME}} come from: its owner's secrets, then SECRETS_FILE's granted ones."""
        cipher = SecretCipher(self.resolved.secrets_key.get_secret_value())
        return SecretVault(store, cipher, self.resolved.secrets_file)

    async def open_store(self) -> Store:
        store = new_store(self.settings, self.resolved)
        await store.start()
        return store

    async def open_bus(self) -> EventBus:
        bus, _ = new_bus(self.settings, self.resolved, self.redis_host, self.redis_port)
        await bus.start()
        return bus


def new_store(settings: Settings, resolved: Resolved) -> Store:
    storage = settings.storage
    return build_store(
        storage.mongodb_url, storage.mongodb_db, resolved.data_dir, storage.mongodb_majority_writes
    )


def new_bus(
    settings: Settings, resolved: Resolved, redis_host: str | None, redis_port: int
) -> tuple[EventBus, EmbeddedRedis | None]:
    """The bus to the Redis at `redis_host`, or, when that is None, to an embedded server it starts."""
    events = settings.events
    password = events.redis_password.get_secret_value() if events.redis_password else None
    return build_event_bus(redis_host, redis_port, password, resolved.data_dir, events.stream_ttl_s)
