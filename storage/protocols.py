"""The storage seams. Each has a production and an embedded implementation, one contract suite for both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from engine.models import WorkflowDefinition
from engine.records import (
    JobAnalytics,
    JobChanges,
    JobEvent,
    JobRecord,
    JobStatus,
    LogEntry,
    NodeCheckpoint,
    Page,
    SecretInfo,
    SignalRecord,
    WebhookChanges,
    WebhookRecord,
    WorkflowAnalytics,
    WorkflowRecord,
)
from engine.schedules import ScheduleEvent, ScheduleRecord, ScheduleSettings


class SecretStore(Protocol):
    """Users' secrets, one row per (owner, name). Values arrive sealed (storage/secret_cipher.py): the
    store keeps bytes it cannot read."""

    async def put_secret(self, owner: str, name: str, sealed: bytes) -> tuple[SecretInfo, bool]:
        """Create or replace; True when it was created."""

    async def list_secrets(self, owner: str) -> list[SecretInfo]:
        """The owner's secrets by name, without values."""

    async def sealed_secrets(self, owner: str) -> dict[str, bytes]:
        """The owner's sealed values by name."""

    async def delete_secret(self, owner: str, name: str) -> None:
        """NotFoundError when the owner has no secret of that name."""


class SignalStore(Protocol):
    """Signals sent to jobs, each stored before its sender is answered (so none is lost); which node took
    one is kept in that node's checkpoint, not here."""

    async def put_signal(self, signal: SignalRecord) -> tuple[SignalRecord, bool]:
        """Store a signal and return it with True; when the job already has a signal of the same
        idempotency key, return that one with False and store nothing."""

    async def list_signals(self, job_id: str) -> list[SignalRecord]:
        """The job's signals in the order they were stored."""


class Store(SecretStore, SignalStore, Protocol):
    """Workflows, jobs with their node checkpoints, job logs, analytics and users' sealed secrets: the
    source of truth."""

    async def start(self) -> None:
        """Open connections, create tables or indexes."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    def unreadable_rows(self) -> int:
        """How many rows this instance met that it cannot read: each is left out of listings and logged
        once with its id; reading it by id raises UnreadableRecordError. A record nested deeper than
        MAX_STORED_DEPTH is refused when written (NestingTooDeepError), so it is never one of them."""

    # workflows
    async def create_workflow(
        self, owner: str, definition: WorkflowDefinition, workflow_id: str | None = None
    ) -> WorkflowRecord: ...

    async def get_workflow(self, workflow_id: str, version: int | None = None) -> WorkflowRecord:
        """The latest version (NotFoundError once deleted), or exactly `version` (kept after a delete
        so that jobs running it are not disturbed)."""

    async def list_workflows(
        self, owner: str | None, offset: int = 0, limit: int = 50, name_contains: str | None = None
    ) -> Page[WorkflowRecord]:
        """Newest first; `owner=None` lists everyone's; `name_contains` keeps those whose name contains
        it, ignoring the case of ASCII letters."""

    async def list_workflow_versions(
        self, workflow_id: str, offset: int = 0, limit: int = 50
    ) -> Page[WorkflowRecord]:
        """Every stored version of a workflow, newest first, also after a delete (NotFoundError when it
        never existed)."""

    async def update_workflow(self, workflow_id: str, definition: WorkflowDefinition) -> WorkflowRecord:
        """Store the definition as a new version and return it."""

    async def delete_workflow(self, workflow_id: str) -> None: ...

    # jobs
    async def create_job(self, job: JobRecord) -> JobRecord:
        """Insert a job. When a job of the same owner has the same idempotency_key, return that one."""

    async def get_job(self, job_id: str) -> JobRecord: ...

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """The jobs of these ids that exist, in no particular order; unknown ids are left out."""

    async def list_jobs(
        self,
        owner: str | None = None,
        workflow_id: str | None = None,
        status: JobStatus | Sequence[JobStatus] | None = None,
        offset: int = 0,
        limit: int = 50,
        waiting: bool | None = None,
        parent_job_id: str | None = None,
        trigger_id: str | None = None,
    ) -> Page[JobRecord]:
        """Newest first; `waiting=True` keeps the jobs some node of which waits now (`waiting_on`),
        `parent_job_id` the child jobs of that job, `trigger_id` the jobs a schedule or webhook started."""

    async def checkpoint(
        self,
        job_id: str,
        expected_version: int,
        changes: JobChanges,
        nodes: Sequence[NodeCheckpoint] = (),
        logs: Sequence[LogEntry] = (),
    ) -> int:
        """Atomically apply job changes and upsert node checkpoints when the stored version is
        `expected_version`; return the new version. A lost race raises ConflictError and stores nothing.

        `logs` (entries of this job only, else ValueError) are appended with the checkpoint, after the
        job's earlier entries: in the same transaction where the store has them (SQLite), so both land or
        neither; on MongoDB their sequence numbers are reserved in the checkpoint's own update and the
        entries inserted right after, so a crash between the two can lose that commit's log lines but
        never mis-number them (an insert that fails raises after the checkpoint has landed)."""

    # logs
    async def append_logs(self, entries: Sequence[LogEntry]) -> None: ...

    async def list_logs(
        self, job_id: str, offset: int = 0, limit: int = 100, node_id: str | None = None
    ) -> Page[LogEntry]:
        """Oldest first, in the order appended; `node_id` keeps that node's entries only."""

    # analytics
    async def job_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> JobAnalytics: ...

    async def workflow_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> WorkflowAnalytics: ...

    # webhooks (issue 17)
    async def create_webhook(self, hook: WebhookRecord) -> WebhookRecord: ...

    async def get_webhook(self, hook_id: str) -> WebhookRecord:
        """NotFoundError when there is no such hook (or it was deleted)."""

    async def list_webhooks(
        self, owner: str | None, offset: int = 0, limit: int = 50, workflow_id: str | None = None
    ) -> Page[WebhookRecord]:
        """Newest first; `owner=None` lists everyone's, `workflow_id` keeps that workflow's hooks."""

    async def update_webhook(self, hook_id: str, changes: WebhookChanges) -> WebhookRecord:
        """Apply the changes (and a new sealed secret, when given) and return the hook; NotFoundError."""

    async def delete_webhook(self, hook_id: str) -> None:
        """NotFoundError when there is no such hook."""

    # ------------------------------------------------------------ schedules (engine/schedules.py)

    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Insert a schedule as given (its id included) and return it as stored."""

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """NotFoundError when there is none of that id."""

    async def list_schedules(
        self,
        owner: str | None,
        offset: int = 0,
        limit: int = 50,
        workflow_id: str | None = None,
        enabled: bool | None = None,
    ) -> Page[ScheduleRecord]:
        """Newest first; `owner=None` lists everyone's; `workflow_id` and `enabled` narrow the list."""

    async def update_schedule(
        self, schedule_id: str, settings: ScheduleSettings, since: datetime
    ) -> ScheduleRecord:
        """Replace the owner's settings and the time slots count from; the firing state (last slot, last job,
        history) is kept. NotFoundError when there is none of that id."""

    async def record_schedule_slot(
        self, schedule_id: str, slot: datetime, job_id: str | None, events: Sequence[ScheduleEvent]
    ) -> ScheduleRecord:
        """A slot was handled: `last_slot` moves to `slot` (never back), `last_job_id` to `job_id` unless that
        is None, and `events` join the history (its newest HISTORY_LIMIT entries kept); one atomic change.
        NotFoundError when the schedule was deleted."""

    async def delete_schedule(self, schedule_id: str) -> None:
        """NotFoundError when there is none of that id."""


class EventBus(Protocol):
    """Per-job and per-workflow event streams: at-least-once, ordered, replayable from an id."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def publish(self, event: JobEvent) -> str | None:
        """Append to the job's and the workflow's streams; return the id in the job's stream. Idempotent
        for a job's sequenced events: one whose sequence (> 0) the job's stream already took is dropped
        and None returned, so an outbox may be published again after a crash."""

    async def publish_many(self, events: Sequence[JobEvent]) -> list[str | None]:
        """`publish` each event, in order, with the same result and dropping rule per event, in one round
        trip to the bus; an empty sequence publishes nothing."""

    def subscribe(self, job_id: str, after: str | None = None) -> AsyncIterator[JobEvent]:
        """Replay the job's events after `after` (all when None), then follow live; ends after the
        event that ends the job."""

    def subscribe_workflow(self, workflow_id: str, after: str | None = None) -> AsyncIterator[JobEvent]:
        """Every job of the workflow, replayed after `after`, then live, without end."""

    async def publish_workflow_event(self, workflow_id: str, event_type: str, data: dict[str, Any]) -> str:
        """The platform's documented name: publish a workflow-level event that belongs to no job."""

    def subscribe_workflow_events(self, workflow_id: str) -> AsyncIterator[JobEvent]:
        """The platform's documented name for following a workflow's events live."""


class RateLimiter(Protocol):
    """Counts requests against a limit per key and minute, shared by every gateway process."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def hit(self, key: str, limit_per_min: int) -> float | None:
        """Count one request of `key`; None when it is within the limit of this minute, else the
        seconds until the next minute starts (the request is refused and counted)."""
