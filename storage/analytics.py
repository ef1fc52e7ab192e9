"""Job and workflow analytics folded from plain job samples, shared by every Store implementation.

Each store only fetches the matching jobs (created_at in [since, until)) as JobSample values;
the numbers are computed here once, so every implementation reports exactly the same figures.

Definitions:
- percentiles are nearest-rank: the p-th percentile of n sorted values is the value at rank
  ceil(p / 100 * n) (1-based), so it is always an observed duration;
- a job's duration is finished_at - started_at, over finished jobs (terminal status, both times set);
- success_rate = completed / (completed + failed + cancelled), None when no job finished;
- per node type: `count` is every node checkpoint of that type, `failed` those with status failed,
  the percentiles are over nodes with both started_at and finished_at;
- workflows are listed by total jobs, most first, then by workflow id.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from engine.records import (
    DurationStats,
    JobAnalytics,
    JobStatus,
    NodeStatus,
    TokenTotals,
    WorkflowAnalytics,
    WorkflowStats,
)

FINISHED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class NodeSample:
    node_type: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class JobSample:
    workflow_id: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    nodes: Sequence[NodeSample] = field(default_factory=tuple)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` (unsorted is fine); None for no values."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _seconds(started_at: datetime | None, finished_at: datetime | None) -> float | None:
    if started_at is None or finished_at is None:
        return None
    return (finished_at - started_at).total_seconds()


def _token_totals(jobs: Iterable[JobSample]) -> TokenTotals:
    totals = TokenTotals()
    for job in jobs:
        for node in job.nodes:
            usage = node.usage or {}
            totals.prompt_tokens += usage.get("prompt_tokens", 0)
            totals.completion_tokens += usage.get("completion_tokens", 0)
            totals.total_tokens += usage.get("total_tokens", 0)
    return totals


@dataclass(frozen=True)
class _JobFigures:
    total: int
    counts_by_status: dict[str, int]
    success_rate: float | None
    p50_duration_s: float | None
    p95_duration_s: float | None
    llm_tokens: TokenTotals


def _job_figures(jobs: Sequence[JobSample]) -> _JobFigures:
    counts: dict[str, int] = defaultdict(int)
    durations: list[float] = []
    for job in jobs:
        counts[job.status] += 1
        duration = _seconds(job.started_at, job.finished_at)
        if job.status in FINISHED_JOB_STATUSES and duration is not None:
            durations.append(duration)
    finished = sum(counts.get(status, 0) for status in FINISHED_JOB_STATUSES)
    return _JobFigures(
        total=len(jobs),
        counts_by_status=dict(sorted(counts.items())),
        success_rate=counts.get(JobStatus.COMPLETED, 0) / finished if finished else None,
        p50_duration_s=percentile(durations, 50),
        p95_duration_s=percentile(durations, 95),
        llm_tokens=_token_totals(jobs),
    )


def _node_type_stats(jobs: Iterable[JobSample]) -> dict[str, DurationStats]:
    counts: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    durations: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        for node in job.nodes:
            counts[node.node_type] += 1
            if node.status == NodeStatus.FAILED:
                failed[node.node_type] += 1
            duration = _seconds(node.started_at, node.finished_at)
            if duration is not None:
                durations[node.node_type].append(duration)
    return {
        node_type: DurationStats(
            count=counts[node_type],
            failed=failed[node_type],
            p50_s=percentile(durations[node_type], 50),
            p95_s=percentile(durations[node_type], 95),
        )
        for node_type in sorted(counts)
    }


def fold_job_analytics(
    jobs: Sequence[JobSample], since: datetime | None, until: datetime | None
) -> JobAnalytics:
    figures = _job_figures(jobs)
    return JobAnalytics(
        since=since,
        until=until,
        total=figures.total,
        counts_by_status=figures.counts_by_status,
        success_rate=figures.success_rate,
        p50_duration_s=figures.p50_duration_s,
        p95_duration_s=figures.p95_duration_s,
        by_node_type=_node_type_stats(jobs),
        llm_tokens=figures.llm_tokens,
    )


def fold_workflow_analytics(
    jobs: Sequence[JobSample],
    names: Mapping[str, str],
    since: datetime | None,
    until: datetime | None,
) -> WorkflowAnalytics:
    """Per-workflow figures; `names` maps workflow ids to their latest name where known."""
    by_workflow: dict[str, list[JobSample]] = defaultdict(list)
    for job in jobs:
        by_workflow[job.workflow_id].append(job)
    ordered = sorted(by_workflow.items(), key=lambda item: (-len(item[1]), item[0]))
    stats = []
    for workflow_id, workflow_jobs in ordered:
        figures = _job_figures(workflow_jobs)
        stats.append(
            WorkflowStats(
                workflow_id=workflow_id,
                name=names.get(workflow_id),
                total=figures.total,
                counts_by_status=figures.counts_by_status,
                success_rate=figures.success_rate,
                p50_duration_s=figures.p50_duration_s,
                p95_duration_s=figures.p95_duration_s,
                llm_tokens=figures.llm_tokens,
            )
        )
    return WorkflowAnalytics(since=since, until=until, workflows=stats)


def check_page(offset: int, limit: int) -> None:
    """Both stores refuse the same bad paging arguments (SQLite and MongoDB read them differently)."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
