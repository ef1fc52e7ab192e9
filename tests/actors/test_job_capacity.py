"""Admission follows the cluster without Ray: the cap from its total resources by mode and MAX_ACTIVE_JOBS,
and the job slots asked of the autoscaler only while jobs queue."""

from __future__ import annotations

import pytest

from actors.ray_runtime.cluster_start import local_executor_slots
from actors.ray_runtime.job_capacity import MIN_ACTIVE_JOBS, admission_limit, job_slots_wanted
from config.settings import JobSettings

pytestmark = pytest.mark.timeout(10)
GIB = 2**30


def jobs(**env: str) -> JobSettings:
    return JobSettings.model_validate(env)


@pytest.mark.parametrize(
    ("env", "resources", "limit"),
    [
        ({}, {"job_slot": 0}, MIN_ACTIVE_JOBS),  # no worker yet: a few jobs' actors wait for one
        ({}, {"job_slot": 4}, 2),  # the warm pool holds 2 of the 4
        ({}, {"job_slot": 8}, 6),  # a second worker joined
        ({"WARM_POOL_SIZE": "0"}, {"job_slot": 8}, 8),
        ({}, {}, MIN_ACTIVE_JOBS),
        ({"MAX_ACTIVE_JOBS": "5"}, {"job_slot": 64}, 5),  # the operator's cap stays put
        ({"JOB_ACTOR_MODE": "reuse"}, {"job_slot": 1, "memory": 30 * GIB}, 102),
        ({"JOB_ACTOR_MODE": "reuse"}, {"job_slot": 1, "memory": 60 * GIB}, 204),
        ({"JOB_ACTOR_MODE": "reuse"}, {"job_slot": 1, "memory": GIB // 4}, MIN_ACTIVE_JOBS),
    ],
)
def test_the_cap_follows_the_clusters_slots_or_memory_unless_max_active_jobs_is_set(env, resources, limit):
    assert admission_limit(jobs(**env), resources) == limit


@pytest.mark.parametrize(
    ("env", "active", "queued", "wanted"),
    [
        ({}, 3, 0, 0),  # nothing waits: no request, so idle nodes may leave
        ({}, 2, 4, 8),  # every running, queued and warm job actor
        ({"WARM_POOL_SIZE": "0"}, 0, 6, 6),
        ({"JOB_ACTOR_MODE": "reuse"}, 2, 10, 0),  # shared actors: queued jobs need no slot of their own
    ],
)
def test_the_autoscaler_is_asked_for_slots_only_while_jobs_queue(env, active, queued, wanted):
    assert job_slots_wanted(jobs(**env), active, queued) == wanted


@pytest.mark.parametrize(
    ("env", "cores", "slots"),
    [
        ({}, 2, 0),  # two base executors already fill a 2-core machine
        ({}, 8, 6),
        ({"EXECUTOR_POOL_MAX": "4"}, 8, 2),
        ({"EXECUTOR_POOL_SIZE": "1", "EXECUTOR_POOL_MAX": "1"}, 8, 0),
    ],
)
def test_a_local_instance_lets_a_fan_out_grow_to_one_executor_per_core(monkeypatch, env, cores, slots):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert local_executor_slots(jobs(**env)) == slots
