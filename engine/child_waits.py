"""The wait of a map whose items are child jobs (`WaitKind.CHILDREN`), as its checkpoint keeps it: per item
the child to start (workflow, version, input and idempotency key), the child started, and how it ended.

The job manager, the gateway and the job actor read it alike (which children a job waits for, which it
started); the map node decides how it moves on (nodes/map_children.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.records import ErrorInfo, WaitInfo


class ChildItem(BaseModel):
    workflow_id: str
    version: int | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    key: str = Field(description="the idempotency key the item's child is started with")
    child_job_id: str | None = Field(default=None, description="the child started, none yet if None")
    status: str | None = Field(default=None, description="how the item ended; None while it has not")
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def unstarted(self) -> bool:
        return self.child_job_id is None and self.status is None

    @property
    def running(self) -> bool:
        return self.child_job_id is not None and self.status is None


class ChildrenWait(BaseModel):
    items: list[ChildItem]
    max_concurrency: int = Field(ge=1)
    failure_policy: str
    min_success_ratio: float = 1.0
    earlier_child_job_ids: list[str] = Field(
        default_factory=list, description="children the node's earlier attempts started"
    )

    @classmethod
    def of(cls, wait: WaitInfo) -> ChildrenWait:
        return cls.model_validate(wait.settings)

    def running(self) -> list[str]:
        return [item.child_job_id for item in self.items if item.running and item.child_job_id]

    def can_start_more(self) -> bool:
        """Whether an item waits to start while fewer than max_concurrency children run."""
        return any(item.unstarted for item in self.items) and len(self.running()) < self.max_concurrency

    def started(self) -> list[str]:
        return [item.child_job_id for item in self.items if item.child_job_id is not None]
