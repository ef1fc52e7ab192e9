"""Settings from environment variables and `.env`, under the names the platform already uses, read into
one tree: `Settings().server.port` is `PORT`. The runtime carries the tree whole to its actors
(actors/ray_runtime/runtime_config.py), and the node settings in it travel on with each node's work.

The platform's shared configuration also names `DEBUG`, `API_GATEWAY_URL` and `RAG_SERVICE_URL`; this
service has no use for them (`LOG_LEVEL` sets the log level), so they are not read.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from config.sections import EMPTY_IS_UNSET, Section, SectionedSettings
from nodes.settings import NodeSettings


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class ActorMode(StrEnum):
    DEDICATED = "dedicated"  # one actor per job, named job:<job_id>, ended with its job
    REUSE = "reuse"  # a few runner actors, each running many jobs at once, replaced after REUSE_MAX_JOBS


class ServerSettings(Section):
    """The gateway's HTTP server."""

    host: str = Field(
        default="127.0.0.1",
        alias="HOST",
        description="loopback by default: a deployment that serves others sets 0.0.0.0 (and JWT_SECRET)",
    )
    port: int = Field(default=8001, alias="PORT", ge=1, le=65535)
    max_body_bytes: int = Field(default=2 * 2**20, alias="MAX_BODY_BYTES", ge=1)
    event_keepalive_s: float = Field(
        default=15.0, alias="EVENT_KEEPALIVE_S", gt=0, description="idle seconds before a keep-alive"
    )
    health_timeout_s: float = Field(default=2.0, alias="HEALTH_TIMEOUT_S", gt=0)
    metrics_token: Annotated[SecretStr | None, EMPTY_IS_UNSET] = Field(
        default=None, alias="METRICS_TOKEN", description="when set, /metrics wants it as a bearer token"
    )
    metrics_models: str = Field(
        default="",
        alias="METRICS_MODELS",
        description="comma-separated model names /metrics labels by name; any other model counts as 'other'",
    )

    @property
    def metrics_model_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.metrics_models.split(",") if name.strip())


class AuthSettings(Section):
    """Tokens, and the key users' secrets are sealed with; no default secret (config/jwt_secret.py and
    config/secrets_key.py say when the service makes its own)."""

    jwt_secret: Annotated[SecretStr | None, EMPTY_IS_UNSET] = Field(default=None, alias="JWT_SECRET")
    jwt_algorithm: str = Field(default="HS256", alias="JWT_ALGORITHM")
    secrets_key: Annotated[SecretStr | None, EMPTY_IS_UNSET] = Field(default=None, alias="SECRETS_KEY")


class StorageSettings(Section):
    """MongoDB when MONGODB_URL is set, else the embedded SQLite file in DATA_DIR."""

    data_dir: Path = Field(default=Path("data"), alias="DATA_DIR")
    mongodb_url: Annotated[str | None, EMPTY_IS_UNSET] = Field(default=None, alias="MONGODB_URL")
    mongodb_db: str = Field(default="optimus", alias="MONGODB_DB")
    mongodb_majority_writes: bool = Field(default=True, alias="MONGODB_MAJORITY_WRITES")


class EventSettings(Section):
    """The Redis at REDIS_HOST when set, else an embedded Redis server in DATA_DIR."""

    redis_host: Annotated[str | None, EMPTY_IS_UNSET] = Field(default=None, alias="REDIS_HOST")
    redis_port: int = Field(default=6379, alias="REDIS_PORT", ge=1, le=65535)
    redis_password: Annotated[SecretStr | None, EMPTY_IS_UNSET] = Field(default=None, alias="REDIS_PASSWORD")
    stream_ttl_s: int = Field(
        default=24 * 3600,
        alias="EVENT_STREAM_TTL_S",
        ge=0,
        description="seconds a job's event stream is kept after the job ends; 0 keeps it",
    )


class RaySettings(Section):
    """A local instance when RAY_ADDRESS is unset."""

    address: Annotated[str | None, EMPTY_IS_UNSET] = Field(default=None, alias="RAY_ADDRESS")
    namespace: str = Field(default="workflow-service", alias="RAY_NAMESPACE")
    dashboard: bool = Field(default=True, alias="RAY_DASHBOARD")


class JobSettings(Section):
    """The job runtime: job actors, admission, executors, and what jobs may use."""

    actor_mode: ActorMode = Field(default=ActorMode.DEDICATED, alias="JOB_ACTOR_MODE")
    max_active_jobs: int = Field(
        default=0,
        alias="MAX_ACTIVE_JOBS",
        ge=0,
        description="0 follows the cluster: its job slots (dedicated mode) or its memory (reuse mode)",
    )
    warm_pool_size: int = Field(default=2, alias="WARM_POOL_SIZE", ge=0)
    reuse_max_jobs: int = Field(default=1000, alias="REUSE_MAX_JOBS", ge=1)
    executor_pool_size: int = Field(default=2, alias="EXECUTOR_POOL_SIZE", ge=1)
    executor_pool_max: int = Field(
        default=16,
        alias="EXECUTOR_POOL_MAX",
        ge=1,
        description="the most executors a large fan-out grows the pool to; those beyond EXECUTOR_POOL_SIZE "
        "each take an `executor_slot`, which worker nodes offer",
    )
    executor_idle_s: float = Field(
        default=60.0,
        alias="EXECUTOR_IDLE_S",
        gt=0,
        description="how long an executor the pool grew by may stay idle before it ends, freeing its node",
    )
    max_workflow_depth: int = Field(
        default=8,
        alias="MAX_WORKFLOW_DEPTH",
        ge=1,
        le=100,
        description="how deep workflow nodes may nest child jobs (a job and its ancestors)",
    )
    schedule_clock: Literal["system", "manual"] = Field(
        default="system",
        alias="SCHEDULE_CLOCK",
        description="tests only: `manual` fires schedules only at the times the keeper's `tick` is given",
    )
    secrets_file: Annotated[Path | None, EMPTY_IS_UNSET] = Field(default=None, alias="SECRETS_FILE")
    node_plugins: str = Field(
        default="", alias="NODE_PLUGINS", description="comma-separated 'package.module:ClassName' node types"
    )

    @property
    def node_plugin_paths(self) -> tuple[str, ...]:
        return tuple(path.strip() for path in self.node_plugins.split(",") if path.strip())


class LogSettings(Section):
    level: str = Field(default="INFO", alias="LOG_LEVEL")
    format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")
    file: Annotated[Path | None, EMPTY_IS_UNSET] = Field(default=None, alias="LOG_FILE")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")
        return level


class Settings(SectionedSettings):
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    nodes: NodeSettings = Field(default_factory=NodeSettings)
    """What node types read where they run (LLM, HTTP and code nodes), shipped with each node's work."""

    @property
    def embedded_development_mode(self) -> bool:
        """The laptop setup: the embedded store and Redis, and a gateway only this machine can reach.
        Only here may the service make its own keys (JWT_SECRET, SECRETS_KEY) and keep them in DATA_DIR."""
        return (
            self.storage.mongodb_url is None
            and self.events.redis_host is None
            and is_loopback_host(self.server.host)
        )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
