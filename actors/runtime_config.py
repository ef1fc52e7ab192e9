"""What every actor needs to reach the same store, bus and cluster: resolved once, passed to each."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from config.log_setup import configure_logging
from config.settings import LogFormat
from nodes.registry import NodeRegistry, default_registry
from nodes.settings import NodeSettings
from storage.bus_factory import build_event_bus
from storage.protocols import EventBus, SecretStore, Store
from storage.redis_bus import DEFAULT_JOB_STREAM_TTL_S
from storage.secret_cipher import SecretCipher
from storage.secret_vault import SecretVault
from storage.store_factory import build_store


class ActorMode(StrEnum):
    DEDICATED = "dedicated"  # one actor per job, named job:<job_id>, ended with its job
    REUSE = "reuse"  # a few runner actors, each running many jobs at once, replaced after `reuse_max_jobs`


class RuntimeConfig(BaseModel):
    namespace: str = "workflow-service"
    mongodb_url: str | None = None
    mongodb_db: str = "optimus"
    mongodb_majority_writes: bool = True
    data_dir: Path
    redis_host: str
    redis_port: int
    redis_password: str | None = None
    event_stream_ttl_s: int = Field(default=DEFAULT_JOB_STREAM_TTL_S, ge=0)
    mode: ActorMode = ActorMode.DEDICATED
    max_active_jobs: int = Field(default=8, ge=1)
    warm_pool_size: int = Field(default=2, ge=0)
    reuse_max_jobs: int = Field(default=1000, ge=1)
    executor_pool_size: int = Field(default=2, ge=1)
    executor_max_concurrency: int = Field(default=1000, ge=1)
    secrets_file: Path | None = None
    secrets_key: SecretStr | None = None
    """Seals and opens users' secrets; the service always sets it (SECRETS_KEY, or the embedded mode's)."""
    node_plugins: tuple[str, ...] = ()
    node_settings: NodeSettings = Field(default_factory=lambda: NodeSettings(_env_file=None))
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON

    def configure_process_logging(self) -> None:
        configure_logging(self.log_level, self.log_format)

    def registry(self) -> NodeRegistry:
        return default_registry(self.node_plugins)

    def secret_vault(self, store: SecretStore) -> SecretVault:
        """Where a job's {{secrets.NAME}} come from: its owner's secrets, then SECRETS_FILE's granted ones."""
        cipher = SecretCipher(self.secrets_key.get_secret_value()) if self.secrets_key else None
        return SecretVault(store, cipher, self.secrets_file)

    async def open_store(self) -> Store:
        store = build_store(self.mongodb_url, self.mongodb_db, self.data_dir, self.mongodb_majority_writes)
        await store.start()
        return store

    async def open_bus(self) -> EventBus:
        bus, _ = build_event_bus(
            self.redis_host, self.redis_port, self.redis_password, self.data_dir, self.event_stream_ttl_s
        )
        await bus.start()
        return bus
