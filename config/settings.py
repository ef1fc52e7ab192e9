"""Settings from environment variables and `.env`, under the names the platform already uses."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # server
    port: int = Field(default=8001, alias="PORT", ge=1, le=65535)
    host: str = Field(
        default="127.0.0.1",
        alias="HOST",
        description="loopback by default: a deployment that serves others sets 0.0.0.0 (and JWT_SECRET)",
    )
    debug: bool = Field(default=False, alias="DEBUG")

    # storage: MongoDB when MONGODB_URL is set, else the embedded SQLite file in DATA_DIR
    mongodb_url: str | None = Field(default=None, alias="MONGODB_URL")
    mongodb_db: str = Field(default="optimus", alias="MONGODB_DB")
    mongodb_majority_writes: bool = Field(default=True, alias="MONGODB_MAJORITY_WRITES")
    data_dir: Path = Field(default=Path("data"), alias="DATA_DIR")

    # events: the Redis at REDIS_HOST when set, else an embedded Redis server in DATA_DIR
    redis_host: str | None = Field(default=None, alias="REDIS_HOST")
    redis_port: int = Field(default=6379, alias="REDIS_PORT", ge=1, le=65535)
    redis_password: SecretStr | None = Field(default=None, alias="REDIS_PASSWORD")
    event_stream_ttl_s: int = Field(
        default=24 * 3600,
        alias="EVENT_STREAM_TTL_S",
        ge=0,
        description="seconds a job's event stream is kept after the job ends; 0 keeps it",
    )

    # auth: no default secret; see config/jwt_secret.py for the one case the service makes its own
    jwt_secret: SecretStr | None = Field(default=None, alias="JWT_SECRET")
    jwt_algorithm: str = Field(default="HS256", alias="JWT_ALGORITHM")

    # other services of the platform
    model_service_url: str = Field(default="http://localhost:8003", alias="MODEL_SERVICE_URL")
    api_gateway_url: str = Field(default="http://localhost:8080", alias="API_GATEWAY_URL")
    rag_service_url: str = Field(default="http://localhost:8002", alias="RAG_SERVICE_URL")

    # logging
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")
    log_file: Path | None = Field(default=None, alias="LOG_FILE")

    # ray: a local instance when unset
    ray_address: str | None = Field(default=None, alias="RAY_ADDRESS")
    ray_namespace: str = Field(default="workflow-service", alias="RAY_NAMESPACE")
    ray_dashboard: bool = Field(default=True, alias="RAY_DASHBOARD")

    # job runtime
    job_actor_mode: str = Field(default="dedicated", alias="JOB_ACTOR_MODE", pattern="^(dedicated|reuse)$")
    max_active_jobs: int = Field(
        default=0, alias="MAX_ACTIVE_JOBS", ge=0, description="0 derives it from the memory Ray has"
    )
    warm_pool_size: int = Field(default=2, alias="WARM_POOL_SIZE", ge=0)
    reuse_max_jobs: int = Field(default=1000, alias="REUSE_MAX_JOBS", ge=1)
    executor_pool_size: int = Field(default=2, alias="EXECUTOR_POOL_SIZE", ge=1)
    secrets_file: Path | None = Field(default=None, alias="SECRETS_FILE")
    secrets_key: SecretStr | None = Field(default=None, alias="SECRETS_KEY")
    node_plugins: str = Field(
        default="", alias="NODE_PLUGINS", description="comma-separated 'package.module:ClassName' node types"
    )

    # gateway
    max_body_bytes: int = Field(default=2 * 2**20, alias="MAX_BODY_BYTES", ge=1)
    event_keepalive_s: float = Field(
        default=15.0, alias="EVENT_KEEPALIVE_S", gt=0, description="idle seconds before a keep-alive"
    )
    health_timeout_s: float = Field(default=2.0, alias="HEALTH_TIMEOUT_S", gt=0)
    metrics_token: SecretStr | None = Field(
        default=None, alias="METRICS_TOKEN", description="when set, /metrics wants it as a bearer token"
    )
    metrics_models: str = Field(
        default="",
        alias="METRICS_MODELS",
        description="comma-separated model names /metrics labels by name; any other model counts as 'other'",
    )

    @property
    def embedded_development_mode(self) -> bool:
        """The laptop setup: the embedded store and Redis, and a gateway only this machine can reach.
        Only here may the service make its own keys (JWT_SECRET, SECRETS_KEY) and keep them in DATA_DIR."""
        return self.mongodb_url is None and self.redis_host is None and is_loopback_host(self.host)

    @property
    def node_plugin_paths(self) -> tuple[str, ...]:
        return tuple(path.strip() for path in self.node_plugins.split(",") if path.strip())

    @property
    def metrics_model_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.metrics_models.split(",") if name.strip())

    @field_validator(
        "mongodb_url",
        "redis_host",
        "ray_address",
        "log_file",
        "secrets_file",
        "secrets_key",
        "jwt_secret",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")
        return level


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
