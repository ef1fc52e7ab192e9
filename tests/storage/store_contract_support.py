"""Records the store contract tests build: workflow definitions, and jobs created at fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.models import NodeSpec, WorkflowDefinition
from engine.records import JobRecord, utcnow
from tests.support.waiting import wait_until

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def definition(name: str = "Summarise", description: str = "") -> WorkflowDefinition:
    return WorkflowDefinition(
        name=name, description=description, nodes=[NodeSpec(id="ask", type="llm", config={"$schema": "x"})]
    )


def job(
    job_id: str, *, owner: str = "alice", workflow_id: str = "wf", created: float = 0, **fields
) -> JobRecord:
    return JobRecord(
        id=job_id, owner=owner, workflow_id=workflow_id, workflow_version=1, created_at=at(created), **fields
    )


def _millisecond(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


async def until_the_clock_passes(moment: datetime) -> None:
    """Wait out the rest of `moment`'s millisecond. Lists are newest first by a creation time the stores
    keep to the millisecond; records created within one millisecond have no order the API promises."""
    assert await wait_until(lambda: _millisecond(utcnow()) > _millisecond(moment), timeout_s=1)
