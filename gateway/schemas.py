"""What the API answers, where it is not a shared record as stored (jobs leave out their lock counters)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.records import (
    ErrorInfo,
    JobRecord,
    JobStatus,
    NodeCheckpoint,
    NodeStatus,
    SignalRecord,
    TriggerRef,
    WaitKind,
    WebhookOptions,
    WebhookRecord,
    WebhookSettings,
)
from engine.waits import child_job_ids


def _seconds(started: datetime | None, finished: datetime | None) -> float | None:
    return (finished - started).total_seconds() if started and finished else None


class WaitOut(BaseModel):
    """What a node waits for (or waited for)."""

    node_id: str
    kind: WaitKind
    signal: str | None = None
    message: str | None = None
    since: datetime
    deadline: datetime | None = None


class NodeState(BaseModel):
    node_id: str
    node_type: str
    status: NodeStatus
    attempts: int
    output: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    inactive_targets: list[str] = Field(default_factory=list)
    usage: dict[str, int] | None = None
    rendered_config: Any = None
    kept_from: str | None = None
    wait: WaitOut | None = Field(default=None, description="what the node waits, or waited, for")
    steps: list[str] = Field(
        default_factory=list,
        description="the durable steps its latest attempt finished, in order (an agent's `turn-<n>` and "
        "`turn-<n>.call-<i>`, a loop's iterations)",
    )
    child_job_ids: list[str] = Field(
        default_factory=list,
        description="for a workflow node, or a map of workflow items: the child jobs its attempts started, "
        "in order",
    )

    @classmethod
    def from_checkpoint(cls, node: NodeCheckpoint) -> NodeState:
        return cls(
            **node.model_dump(exclude={"wait", "steps"}),
            steps=list(node.steps),
            duration_s=_seconds(node.started_at, node.finished_at),
            wait=None if node.wait is None else WaitOut(node_id=node.node_id, **node.wait.model_dump()),
            child_job_ids=child_job_ids(node.wait),
        )


class JobSummary(BaseModel):
    id: str
    owner: str
    workflow_id: str
    workflow_version: int
    status: JobStatus
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    rerun_of: str | None = Field(default=None, description="the job this one re-runs, if it is a re-run")
    waiting_on: list[str] = Field(
        default_factory=list, description="the nodes that wait now for a person, a signal or a timer"
    )
    parent_job_id: str | None = Field(default=None, description="for a child job: the job that started it")
    parent_node_id: str | None = Field(default=None, description="for a child job: the parent's node")
    trigger: TriggerRef | None = Field(
        default=None,
        description="the schedule or webhook that started it (`kind`, `id`); none if an API call did",
    )

    @classmethod
    def from_record(cls, job: JobRecord) -> JobSummary:
        return cls(
            **job.model_dump(include=set(cls.model_fields) - {"duration_s"}),
            duration_s=_seconds(job.started_at, job.finished_at),
        )


class JobOut(JobSummary):
    """A job: its status, input and result, and per node its status, attempts, output, timings, error."""

    input: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    idempotency_key: str | None = None
    called_versions: dict[str, int] = Field(
        default_factory=dict,
        description="the version of each called workflow its workflow nodes without a `version` run",
    )
    nodes: dict[str, NodeState] = Field(default_factory=dict)

    @classmethod
    def from_record(cls, job: JobRecord) -> JobOut:
        return cls(
            **job.model_dump(include=set(cls.model_fields) - {"duration_s", "nodes"}),
            duration_s=_seconds(job.started_at, job.finished_at),
            nodes={node_id: NodeState.from_checkpoint(node) for node_id, node in job.nodes.items()},
        )


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_nodes: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        max_length=1000,
        description="nodes to run again with everything downstream of them, even those the old job completed",
    )
    input: dict[str, Any] | None = Field(
        default=None, description="a new input in place of the old job's; then every node runs again"
    )


class NodeTypeInfo(BaseModel):
    type: str
    description: str
    execution: str
    config_schema: dict[str, Any]


class NodeTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(default_factory=dict, description="the node's config, as in a definition")
    input: dict[str, Any] = Field(default_factory=dict, description="what `{{input.*}}` templates read")


class NodeTestResult(BaseModel):
    node_type: str
    output: Any = None
    inactive_targets: list[str] = Field(default_factory=list)
    usage: dict[str, int] | None = None
    duration_s: float


class CheckResult(BaseModel):
    ok: bool
    detail: str | None = None
    latency_ms: float


class SandboxPart(BaseModel):
    ok: bool
    detail: str | None = None


class SandboxReport(BaseModel):
    ok: bool = Field(description="code nodes run in the full sandbox on the gateway's machine")
    detail: str | None = Field(default=None, description="why not: code nodes refuse or run weaker")
    parts: dict[str, SandboxPart] = Field(
        default_factory=dict, description="bubblewrap, seccomp, cgroups and landlock, each reported"
    )


class StoreReport(BaseModel):
    unreadable_rows: int = Field(
        description="stored rows this gateway met that it cannot read, since it started: each is left out "
        "of listings and logged with its id (the job manager counts its own in `jobs.unreadable_rows`)"
    )


class HealthReport(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckResult]
    jobs: dict[str, Any] | None = Field(
        default=None, description="the job manager's counts, when it answered"
    )
    sandbox: SandboxReport | None = Field(
        default=None, description="the code node's sandbox here; never makes /health unavailable"
    )
    store: StoreReport | None = None


class SignalOut(BaseModel):
    """A signal as stored: `duplicate` when its Idempotency-Key was sent before (nothing new stored)."""

    id: str
    job_id: str
    name: str
    sender: str
    created_at: datetime
    duplicate: bool = False

    @classmethod
    def from_record(cls, signal: SignalRecord, duplicate: bool) -> SignalOut:
        return cls(**signal.model_dump(include=set(cls.model_fields)), duplicate=duplicate)


class ApprovalDecision(BaseModel):
    """The body of an approval node's signal."""

    model_config = ConfigDict(extra="forbid")

    approved: bool = Field(description="true approves, false rejects")
    comment: str | None = Field(default=None, max_length=10_000)
    data: Any = Field(default=None, description="anything the approver sends along; the node's `data`")


class ApprovalOut(BaseModel):
    """An open approval in an approver's inbox."""

    job_id: str
    node_id: str
    signal: str = Field(
        description="the signal that decides it: the approval node's id, or for an agent's approval tool "
        "`<agent node>.<turn>.<call>`"
    )
    message: str | None = None
    since: datetime
    deadline: datetime | None = None


# webhooks (issue 17)


class WebhookOut(WebhookSettings):
    """A webhook as the API shows it: never its secret (answered once, by create and rotate)."""

    id: str
    workflow_id: str
    owner: str
    url: str = Field(description="where deliveries are posted: `/hooks/{id}` on this service, no JWT needed")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, hook: WebhookRecord) -> WebhookOut:
        return cls(**hook.model_dump(exclude={"owner_roles", "sealed_secret"}), url=f"/hooks/{hook.id}")


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="the hook's secret: shown this once, never again (rotate for a new one)")


class WebhookPatch(WebhookOptions):
    """The options to change; those left out are kept."""


class DeliveryOut(BaseModel):
    """The answer to a delivery: the job it started (or, for a redelivery, started before)."""

    job_id: str
    status: JobStatus
    result: Any = Field(
        default=None, description="with `respond: wait`, the result of a job that ended in time"
    )
