"""Prometheus metrics of a gateway, kept in the app's own registry; with `serve --workers N`, of all N.

Each of N workers records into its own files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, which it enters when the variable is set as it is imported), and /metrics, whichever
worker answers it, adds up every worker's counters and histograms; a gauge reads the value a live worker
set most recently. The serving process calls `forget_worker` as each worker ends.

/metrics needs no user token (METRICS_TOKEN may guard it), so it carries no tenant's data: every label
takes values from a set the operator bounds, never an id or a name a user chose.

- Jobs started / finished (by final status), job and node durations (by node type: the registered types),
  LLM requests and tokens by model: fed by the JobWatcher from the jobs this gateway started, read from
  the store about once a second. A job counts as started once its record has a start time; when it ends,
  its record gives the durations and the token usage of each node, and the job's workflow version the
  model (see `llm_calls`). A model is labelled by name only if METRICS_MODELS lists it: model names come
  from users' workflows, so any other counts as `other`.
- Active and pending jobs: gauges set from the job manager's counts when /metrics is scraped.
- HTTP requests by method (the standard ones, any other as `other`), route template (not the raw path, so
  ids neither explode the label set nor show) and status: a pure ASGI middleware, which leaves streaming
  responses alone.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.models import NodeSpec, WorkflowDefinition
from engine.records import JobRecord, NodeCheckpoint

JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
UNMATCHED_ROUTE = "unmatched"
UNKNOWN_MODEL = "unknown"
OTHER = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAP_NODE_TYPE = "map"
AGENT_NODE_TYPE = "agent"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
GAUGE_MODE: Final = "livemostrecent"
"""The job counts are the cluster's, the same whichever worker sets them at a scrape: the latest one wins."""


def forget_worker(pid: int) -> None:
    """Drop an ended worker's gauges from what /metrics shows (its counts stay in the sums)."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)


def llm_calls(node: NodeCheckpoint, spec: NodeSpec | None) -> tuple[str, int]:
    """The model and the number of LLM requests behind a node's token usage: one for an llm node
    (its model as configured, else as it answered), one per succeeded item for a map of llm nodes
    (whose usage is the items' sum), one per model turn for an agent (tools' own LLM calls, under the
    agent's model, counted in its usage but not here)."""
    config = spec.config if spec is not None else {}
    output = node.output if isinstance(node.output, dict) else {}
    requests = 1
    if node.node_type == MAP_NODE_TYPE:
        child = config.get("node")
        config = child.get("config", {}) if isinstance(child, dict) else {}
        requests = output.get("succeeded", 1) if isinstance(output.get("succeeded"), int) else 1
        output = {}
    elif node.node_type == AGENT_NODE_TYPE and isinstance(output.get("steps"), list):
        requests = len(output["steps"]) or 1
    for model in (config.get("model"), output.get("model")):
        if isinstance(model, str) and model and "{{" not in model:
            return model, requests
    return UNKNOWN_MODEL, requests


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, models: frozenset[str] = frozenset()) -> None:
        self._models = models
        """The model names labelled as themselves (METRICS_MODELS)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self._exposed = r
        """What /metrics renders: this registry, or every worker's files in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_DIR_ENV):
            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed)
        self.jobs_started = Counter("workflow_jobs_started_total", "Jobs that started running", registry=r)
        self.jobs_finished = Counter(
            "workflow_jobs_finished_total", "Jobs that ended, by final status", ["status"], registry=r
        )
        self.job_duration = Histogram(
            "workflow_job_duration_seconds",
            "From a job's start to its end",
            ["status"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.node_duration = Histogram(
            "workflow_node_duration_seconds",
            "From a node's start to its end (its last attempt), by node type",
            ["node_type", "status"],
            buckets=NODE_BUCKETS,
            registry=r,
        )
        self.active_jobs = Gauge(
            "workflow_active_jobs", "Jobs running now", registry=r, multiprocess_mode=GAUGE_MODE
        )
        self.pending_jobs = Gauge(
            "workflow_pending_jobs", "Jobs waiting for a slot", registry=r, multiprocess_mode=GAUGE_MODE
        )
        self.llm_requests = Counter(
            "workflow_llm_requests_total", "LLM requests made by nodes", ["model"], registry=r
        )
        self.llm_tokens = Counter(
            "workflow_llm_tokens_total", "LLM tokens used by nodes", ["model", "kind"], registry=r
        )
        self.http_requests = Counter(
            "workflow_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )

    def job_started(self) -> None:
        self.jobs_started.inc()

    def job_finished(self, job: JobRecord, definition: WorkflowDefinition | None) -> None:
        self.jobs_finished.labels(job.status.value).inc()
        if job.started_at and job.finished_at:
            self.job_duration.labels(job.status.value).observe(
                (job.finished_at - job.started_at).total_seconds()
            )
        specs = {spec.id: spec for spec in definition.nodes} if definition else {}
        for node in job.nodes.values():
            if node.started_at and node.finished_at:
                seconds = (node.finished_at - node.started_at).total_seconds()
                self.node_duration.labels(node.node_type, node.status.value).observe(seconds)
            if node.usage:
                model, requests = llm_calls(node, specs.get(node.node_id))
                model = model if model in self._models or model == UNKNOWN_MODEL else OTHER
                self.llm_requests.labels(model).inc(requests)
                for kind in ("prompt", "completion"):
                    self.llm_tokens.labels(model, kind).inc(node.usage.get(f"{kind}_tokens", 0))

    def set_job_counts(self, active: int, pending: int) -> None:
        self.active_jobs.set(active)
        self.pending_jobs.set(pending)

    def render(self) -> bytes:
        return generate_latest(self._exposed)


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in HTTP_METHODS else OTHER
            self.metrics.http_requests.labels(method, route, str(status)).inc()
