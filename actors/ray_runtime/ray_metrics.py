"""The engine's own metrics, exported through Ray's metrics agent (`ray.util.metrics`).

Every Ray node serves them in Prometheus format on its metrics export port, prefixed `ray_`, beside
Ray's own metrics; the dashboard's Metrics view (with Prometheus and Grafana set up) graphs them. They
are recorded where the work happens, in the job actors, so they cover every gateway of a cluster:

- `ray_workflow_job_runs_total`: job runs started by job actors (a job resumed after a crash counts again)
- `ray_workflow_job_runs_finished_total{status}`: runs ended, by the job's status (`aborted`: the run
  raised instead of ending the job)
- `ray_workflow_job_run_seconds{status}`: how long a job actor spent on a run, as a histogram

Tags stay low in cardinality: no workflow names or job ids, which users choose without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from actors.ray_runtime import ray_api

RUN_SECONDS_BOUNDARIES = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]
ABORTED = "aborted"


@dataclass(frozen=True)
class _JobMetrics:
    runs: ray_api.MetricCounter
    finished: ray_api.MetricCounter
    run_seconds: ray_api.MetricHistogram


@cache
def _job_metrics() -> _JobMetrics:
    """Created once per process, on first use inside Ray (a metric needs a connected worker)."""
    return _JobMetrics(
        runs=ray_api.metric_counter("workflow_job_runs_total", "Job runs started by job actors."),
        finished=ray_api.metric_counter(
            "workflow_job_runs_finished_total", "Job runs ended, by the job's status.", ("status",)
        ),
        run_seconds=ray_api.metric_histogram(
            "workflow_job_run_seconds",
            "Seconds a job actor spent on a job run, by the job's status.",
            RUN_SECONDS_BOUNDARIES,
            ("status",),
        ),
    )


def job_run_started() -> None:
    if ray_api.is_initialized():
        _job_metrics().runs.inc()


def job_run_finished(status: str, seconds: float) -> None:
    """`status` is the job's status after the run, or ABORTED when the run raised."""
    if ray_api.is_initialized():
        metrics = _job_metrics()
        metrics.finished.inc(tags={"status": status})
        metrics.run_seconds.observe(seconds, tags={"status": status})
