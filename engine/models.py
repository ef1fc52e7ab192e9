"""Workflow definitions exactly as users write them.

Unknown fields are refused, so a misspelt `timeout` or `retries` is reported instead of silently doing
nothing; what tools need to keep beside the definition (editor positions, labels) goes in `metadata`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OnError(StrEnum):
    """What a node's final failure does to the job."""

    FAIL = "fail"
    CONTINUE = "continue"
    ERROR_EDGE = "error_edge"


class RetryPolicy(BaseModel):
    """Retry a failing node: delay = min(max_delay, backoff * 2 ** (attempt - 1)), with jitter."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0, le=3600, description="first delay in seconds")
    max_delay: float = Field(default=60.0, ge=0, le=86400)

    def delay_before(self, attempt: int) -> float:
        """Delay (without jitter) before attempt number `attempt` (2 is the first retry)."""
        return min(self.max_delay, self.backoff * 2.0 ** max(0, attempt - 2))


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    on_error: OnError = OnError.FAIL
    error_edge: str | None = Field(
        default=None, description="with on_error=error_edge: the direct successor to run when this node fails"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form, kept as written")


class EdgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    target: str
    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form, kept as written")


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    nodes: list[NodeSpec] = Field(default_factory=list)
    edges: list[EdgeSpec] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form, kept as written")
