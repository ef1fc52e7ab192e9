"""Settings node types need where they run (executor actors, Ray tasks), read once by the service
from the environment and `.env`, then shipped with each remote call, so a worker on another machine
uses the same policy as the gateway that accepted the job."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # llm
    model_service_url: str = Field(default="http://localhost:8003", alias="MODEL_SERVICE_URL")

    # http
    http_allow_private_networks: bool = Field(default=False, alias="HTTP_ALLOW_PRIVATE_NETWORKS")

    # code
    sandbox_allow_unsandboxed: bool = Field(default=False, alias="SANDBOX_ALLOW_UNSANDBOXED")
