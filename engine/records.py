"""What the service stores and streams: workflows, jobs with their per-node checkpoints, logs, events.

These models are the one shape every layer shares. A job's `nodes` map is at once the
checkpoint in the store and the scheduler's state, so recovery reads back exactly what
the scheduling step works on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine.models import WorkflowDefinition
from engine.webhooks import HookAuth, HookRespond

CHECKPOINT_SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_NODE_STATUSES


TERMINAL_NODE_STATUSES = frozenset(
    {NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)


class ErrorInfo(BaseModel):
    """A failure as stored and shown: its type, message and whether a retry could help."""

    type: str
    message: str
    retryable: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class WaitKind(StrEnum):
    APPROVAL = "approval"
    SIGNAL = "signal"
    TIMER = "timer"
    CHILD = "child"
    CHILDREN = "children"


class WaitInfo(BaseModel):
    """What a waiting node waits for, kept in its checkpoint: the wait survives any crash with it, and
    whoever resumes the job (any actor) finishes the wait from this alone."""

    kind: WaitKind
    signal: str | None = Field(
        default=None,
        description="the signal's name (an approval's is its node id, a child job's `child:<job id>`)",
    )
    message: str | None = Field(default=None, description="what an approver sees")
    since: datetime
    deadline: datetime | None = Field(
        default=None, description="when a timer is due, or when a timeout ends the wait"
    )
    approvers: list[str] = Field(
        default_factory=list, description="who may decide an approval besides the job's owner and admins"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="the rendered config the node finishes its wait with"
    )
    taken_signal: str | None = Field(
        default=None, description="the id of the signal that ended the wait, stored with the completion"
    )
    taken_signals: list[str] = Field(
        default_factory=list,
        description="for a wait that takes many signals (a map's children): the ids taken so far, each "
        "stored with the checkpoint that took it",
    )

    def public(self, node_id: str) -> dict[str, Any]:
        """The wait as `GET /jobs/{id}/waits` shows it."""
        return {
            "node_id": node_id,
            "kind": self.kind.value,
            "signal": self.signal,
            "message": self.message,
            "since": self.since.isoformat(),
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }


class SignalRecord(BaseModel):
    """A signal sent to a job, stored before its sender is answered; a waiting node takes it exactly once
    (the checkpoint that completes the wait names it in `WaitInfo.taken_signal`)."""

    id: str
    job_id: str
    name: str
    payload: dict[str, Any] = Field(default_factory=dict)
    sender: str
    idempotency_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class NodeCheckpoint(BaseModel):
    node_id: str
    node_type: str
    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    inactive_targets: list[str] = Field(
        default_factory=list, description="successors whose edge from this node was not taken"
    )
    usage: dict[str, int] | None = Field(
        default=None, description="LLM token counts, when the node made calls"
    )
    rendered_config: Any = Field(
        default=None,
        description="the config its last attempt ran with, templates rendered, secrets masked, size-capped",
    )
    kept_from: str | None = Field(
        default=None,
        description="for a node a re-run kept: the job that ran it (analytics count it there, not here)",
    )
    wait: WaitInfo | None = Field(default=None, description="what the node waits, or waited, for")
    steps: dict[str, Any] = Field(
        default_factory=dict,
        description="the durable steps its current attempt recorded, by key (engine/steps.py)",
    )


class WorkflowRecord(BaseModel):
    id: str
    owner: str
    version: int = 1
    name: str
    description: str = ""
    definition: WorkflowDefinition
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EventType(StrEnum):
    JOB_STARTED = "job_started"
    NODE_STARTED = "node_started"
    NODE_COMPLETED = "node_completed"
    NODE_FAILED = "node_failed"
    NODE_SKIPPED = "node_skipped"
    NODE_RETRYING = "node_retrying"
    NODE_PROGRESS = "node_progress"
    LOOP_ITERATION = "loop_iteration"
    NODE_WAITING = "node_waiting"
    SIGNAL_RECEIVED = "signal_received"
    CHILD_JOB_STARTED = "child_job_started"
    CHILD_JOB_FINISHED = "child_job_finished"
    LLM_TOKEN = "llm_token"
    AGENT_STEP = "agent_step"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_FINISHED = "tool_call_finished"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"


JOB_ENDING_EVENTS = frozenset({EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED})


class JobEvent(BaseModel):
    """One event of a job. `id` is the stream position it was read at (None before publishing).

    `type` is an EventType for job events; workflow-level events published through the platform's
    `publish_workflow_event` carry the caller's own type name and no job id."""

    id: str | None = None
    sequence: int
    type: str
    time: datetime = Field(default_factory=utcnow)
    job_id: str | None = None
    workflow_id: str
    node_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def ends_job(self) -> bool:
        return self.type in JOB_ENDING_EVENTS


class TriggerRef(BaseModel):
    """What started a job other than an API call: a schedule's slot or a webhook's delivery."""

    kind: Literal["schedule", "webhook"]
    id: str


class JobRecord(BaseModel):
    model_config = ConfigDict(validate_assignment=False)

    id: str
    owner: str
    workflow_id: str
    workflow_version: int
    status: JobStatus = JobStatus.PENDING
    input: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: ErrorInfo | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: int = Field(default=0, description="optimistic-lock counter, bumped by every stored change")
    actor_name: str | None = None
    idempotency_key: str | None = None
    rerun_of: str | None = Field(default=None, description="the ended job this one re-runs")
    parent_job_id: str | None = Field(default=None, description="for a child job: the job that started it")
    parent_node_id: str | None = Field(default=None, description="for a child job: the parent's node")
    workflow_chain: list[str] = Field(
        default_factory=list,
        description="for a child job: the workflows of its ancestors, the root job's first",
    )
    called_versions: dict[str, int] = Field(
        default_factory=dict,
        description="the version each workflow node without a `version` runs: the called workflow's latest "
        "when this job was created, kept so a resumed job starts the same version",
    )
    trigger: TriggerRef | None = Field(default=None, description="the schedule or webhook that started it")
    owner_roles: list[str] = Field(
        default_factory=list,
        description="the owner's roles when the job was created: which operator secrets the job may use",
    )
    event_sequence: int = Field(default=0, description="sequence number of the last event published")
    pending_events: list[JobEvent] = Field(
        default_factory=list,
        description="the last checkpoint's events (an outbox): a crash may come before they are "
        "published, so a resumed runner publishes them again and the bus drops those it has",
    )
    nodes: dict[str, NodeCheckpoint] = Field(default_factory=dict)
    waiting_on: list[str] = Field(
        default_factory=list, description="the nodes that wait now (for a person, a signal or a timer)"
    )
    schema_version: int = CHECKPOINT_SCHEMA_VERSION


class JobChanges(BaseModel):
    """Job-level fields a checkpoint may change; None means unchanged."""

    status: JobStatus | None = None
    result: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    actor_name: str | None = None
    event_sequence: int | None = None
    pending_events: list[JobEvent] | None = None
    waiting_on: list[str] | None = None

    def as_updates(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="python", exclude_none=True).items()}


class SecretInfo(BaseModel):
    """A stored secret as the API shows it: never its value."""

    name: str
    source: str = Field(default="user", description="`user`: the caller's own; `operator`: SECRETS_FILE")
    created_at: datetime | None = None
    updated_at: datetime | None = None


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogEntry(BaseModel):
    job_id: str
    time: datetime = Field(default_factory=utcnow)
    level: LogLevel = LogLevel.INFO
    node_id: str | None = None
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class DurationStats(BaseModel):
    count: int = 0
    failed: int = 0
    p50_s: float | None = None
    p95_s: float | None = None


class TokenTotals(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class JobAnalytics(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    total: int = 0
    counts_by_status: dict[str, int] = Field(default_factory=dict)
    success_rate: float | None = Field(
        default=None, description="completed / finished, None when none finished"
    )
    p50_duration_s: float | None = None
    p95_duration_s: float | None = None
    by_node_type: dict[str, DurationStats] = Field(default_factory=dict)
    llm_tokens: TokenTotals = Field(default_factory=TokenTotals)


class WorkflowStats(BaseModel):
    workflow_id: str
    name: str | None = None
    total: int = 0
    counts_by_status: dict[str, int] = Field(default_factory=dict)
    success_rate: float | None = None
    p50_duration_s: float | None = None
    p95_duration_s: float | None = None
    llm_tokens: TokenTotals = Field(default_factory=TokenTotals)


class WorkflowAnalytics(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    workflows: list[WorkflowStats] = Field(default_factory=list)


# webhooks


class WebhookOptions(BaseModel):
    """What a hook's owner may change after creating it (a PATCH sets those it names)."""

    model_config = ConfigDict(extra="forbid")

    respond: HookRespond = Field(
        default="accept",
        description="`accept`: answer 202 with the job id at once; `wait`: wait up to `respond_timeout_s` "
        "for the job to end and answer 200 with its status and result",
    )
    respond_timeout_s: float = Field(default=10.0, gt=0, le=30)
    delivery_id_header: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9-]+$",
        description="a header whose value identifies a delivery (e.g. X-GitHub-Delivery): a redelivery "
        "starts no second job",
    )
    rate_limit_per_min: int = Field(default=60, ge=1, le=100_000, description="deliveries accepted a minute")
    enabled: bool = Field(default=True, description="a disabled hook answers 401 to every delivery")


class WebhookSettings(WebhookOptions):
    """What a hook's owner chooses when creating it."""

    auth: HookAuth = Field(
        default="signature",
        description="`signature`: an HMAC-SHA256 of the raw body in X-Signature-256; `token`: the secret "
        "as a bearer token",
    )


class WebhookRecord(WebhookSettings):
    """A stored webhook. `sealed_secret` is its secret sealed by storage/secret_cipher.py (with the owner
    and `webhook:<id>` as associated data); it never leaves the service."""

    id: str
    owner: str
    owner_roles: list[str] = Field(default_factory=list)
    workflow_id: str
    sealed_secret: bytes = Field(exclude=True, repr=False)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookChanges(WebhookOptions):
    """An update: only the fields set (`model_fields_set`) change; `sealed_secret` replaces the secret."""

    sealed_secret: bytes | None = Field(default=None, exclude=True, repr=False)

    def options(self) -> dict[str, Any]:
        """The options this update sets, by field name."""
        return self.model_dump(include=self.model_fields_set & set(WebhookOptions.model_fields))
