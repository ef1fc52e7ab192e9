"""Start or join the Ray cluster, and work out how many jobs may run on it at once."""

from __future__ import annotations

import logging
import os

import psutil

from actors.ray_runtime import ray_api
from actors.ray_runtime.job_capacity import admission_limit, derive_max_active_jobs
from config.settings import JobSettings, Settings

logger = logging.getLogger(__name__)


def local_executor_slots(jobs: JobSettings) -> int:
    """The executors a local instance lets a fan-out grow by: at most one executor per core in all (more
    only compete for the cores), and never beyond EXECUTOR_POOL_MAX."""
    per_core = (os.cpu_count() or 1) - jobs.executor_pool_size
    return max(0, min(jobs.executor_pool_max - jobs.executor_pool_size, per_core))


def start_ray(settings: Settings, address: str | None) -> tuple[ray_api.ClusterInfo, int]:
    """Join the cluster at `address`, or start a local instance sized from this machine's memory; with
    MAX_ACTIVE_JOBS, or the admission limit that follows the cluster's job slots when it is 0."""
    jobs = settings.jobs
    max_active = jobs.max_active_jobs or derive_max_active_jobs(psutil.virtual_memory().available)
    cluster = ray_api.init(
        address,
        settings.ray.namespace,
        job_slots=max_active + jobs.warm_pool_size,
        executor_slots=local_executor_slots(jobs),
        include_dashboard=settings.ray.dashboard,
    )
    resources = ray_api.cluster_resources()
    if not jobs.max_active_jobs:
        max_active = admission_limit(jobs, resources)
    if not resources.get(ray_api.JOB_SLOT):
        logger.warning(
            "no Ray node offers the '%s' resource: job actors wait until the autoscaler adds a node "
            "that does (give workers resources={'%s': N})",
            ray_api.JOB_SLOT,
            ray_api.JOB_SLOT,
        )
    return cluster, max_active
