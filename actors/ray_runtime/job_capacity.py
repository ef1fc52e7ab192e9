"""How many jobs the manager admits at once, and how many job slots it asks the autoscaler for.

MAX_ACTIVE_JOBS > 0 is a fixed cap. At 0 the cap follows the cluster as nodes come and go: in dedicated mode
each running job holds one job actor and so one `job_slot`, so the cap is the cluster's job slots less those
the warm pool holds; reuse mode's shared actors run many jobs each, so there it is what fits in the memory Ray
has. Either way at least MIN_ACTIVE_JOBS, so a cluster with no job slot yet still starts jobs, whose pending
actors make the autoscaler add a node.

While jobs wait in the queue the manager asks the autoscaler for a slot for every running, queued and warm
job actor (`request_resources` takes the whole demand, not an increment), so it adds nodes for the queue
rather than one pending actor at a time; with the queue empty the request is withdrawn, so idle nodes can
leave.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.ray_runtime.ray_api import JOB_SLOT
from config.settings import ActorMode, JobSettings

MEMORY_PER_JOB_ACTOR = 150 * 2**20
MIN_ACTIVE_JOBS, MAX_DERIVED_ACTIVE_JOBS = 2, 256


def derive_max_active_jobs(memory_bytes: float) -> int:
    """Half the memory Ray may use, at about 150 MB per job actor (84 MB measured, plus headroom)."""
    fitting = int(memory_bytes * 0.5 // MEMORY_PER_JOB_ACTOR)
    return max(MIN_ACTIVE_JOBS, min(MAX_DERIVED_ACTIVE_JOBS, fitting))


def admission_limit(jobs: JobSettings, cluster_resources: Mapping[str, float]) -> int:
    """The cap on running jobs for the cluster's current total resources."""
    if jobs.max_active_jobs:
        return jobs.max_active_jobs
    if jobs.actor_mode is ActorMode.REUSE:
        return derive_max_active_jobs(cluster_resources.get("memory", 0.0))
    free_of_pool = int(cluster_resources.get(JOB_SLOT, 0.0)) - jobs.warm_pool_size
    return max(MIN_ACTIVE_JOBS, free_of_pool)


def job_slots_wanted(jobs: JobSettings, active: int, queued: int) -> int:
    """The job slots to ask the autoscaler for: 0 (no request) unless jobs wait in the queue."""
    if not queued or jobs.actor_mode is ActorMode.REUSE:
        return 0
    return active + queued + jobs.warm_pool_size
