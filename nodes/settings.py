"""Settings node types need where they run (executor actors, Ray tasks): the `nodes` section of the
service's settings (config/settings.py), read once where the service starts and shipped with each
remote call, so a worker on another machine uses the same policy as the gateway that accepted the job.
Built on its own, `NodeSettings()` holds the defaults: it never reads the environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from config.sections import EMPTY_IS_UNSET, Section
from nodes.ssrf import check_allowed_hosts


class NodeSettings(Section):
    # llm
    model_service_url: str = Field(default="http://localhost:8003", alias="MODEL_SERVICE_URL")
    llm_api_key: Annotated[SecretStr | None, EMPTY_IS_UNSET] = Field(default=None, alias="LLM_API_KEY")
    llm_request_timeout_s: float = Field(default=120.0, gt=0, alias="LLM_REQUEST_TIMEOUT_S")
    llm_max_attempts: int = Field(default=4, ge=1, le=20, alias="LLM_MAX_ATTEMPTS")
    llm_backoff_base_s: float = Field(default=0.5, gt=0, alias="LLM_BACKOFF_BASE_S")
    llm_backoff_max_s: float = Field(default=30.0, gt=0, alias="LLM_BACKOFF_MAX_S")
    llm_max_concurrency: int = Field(default=200, ge=0, alias="LLM_MAX_CONCURRENCY")
    llm_requests_per_minute: int = Field(default=0, ge=0, alias="LLM_REQUESTS_PER_MINUTE")
    llm_tokens_per_minute: int = Field(default=0, ge=0, alias="LLM_TOKENS_PER_MINUTE")

    # http
    http_allow_private_networks: bool = Field(default=False, alias="HTTP_ALLOW_PRIVATE_NETWORKS")
    http_allowed_hosts: Annotated[str, AfterValidator(check_allowed_hosts)] = Field(
        default="", alias="HTTP_ALLOWED_HOSTS"
    )
    http_timeout_s: float = Field(default=30.0, gt=0, alias="HTTP_TIMEOUT_S")
    http_max_response_bytes: int = Field(default=10 * 2**20, gt=0, alias="HTTP_MAX_RESPONSE_BYTES")
    http_max_connections: int = Field(default=256, gt=0, alias="HTTP_MAX_CONNECTIONS")

    # code
    sandbox_allow_unsandboxed: bool = Field(default=False, alias="SANDBOX_ALLOW_UNSANDBOXED")
    sandbox_cgroup_parent: str = Field(default="", alias="SANDBOX_CGROUP_PARENT")
    sandbox_wall_clock_s: float = Field(default=30.0, gt=0, alias="SANDBOX_WALL_CLOCK_S")
    sandbox_cpu_s: int = Field(default=30, gt=0, alias="SANDBOX_CPU_S")
    sandbox_memory_mb: int = Field(default=512, gt=0, alias="SANDBOX_MEMORY_MB")
    sandbox_max_processes: int = Field(default=32, gt=0, alias="SANDBOX_MAX_PROCESSES")
    sandbox_max_output_bytes: int = Field(default=2**20, gt=0, alias="SANDBOX_MAX_OUTPUT_BYTES")
    sandbox_max_log_bytes: int = Field(default=64 * 2**10, gt=0, alias="SANDBOX_MAX_LOG_BYTES")
