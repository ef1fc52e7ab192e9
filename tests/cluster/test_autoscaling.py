"""Autoscaling with Ray's fake multi-node provider: a head without job slots, workers with 4 job slots and
2 executor slots each.

Six jobs and a 10,000-item map at once need seven job slots: admission, which follows the cluster's job
slots, starts at its floor, the autoscaler adds workers for the waiting actors and the queue, and admission
grows as they join; the map grows the executor pool onto a worker; every job completes; the workers go
away again once idle (the grown executor retires first). The service runs in a subprocess (the test
session has a Ray instance of its own) connected to the cluster through RAY_ADDRESS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from actors.ray_runtime.job_capacity import MIN_ACTIVE_JOBS
from tests.cluster.autoscale_phase import MAP_ITEMS
from tests.cluster.fake_cluster import REPO, FakeAutoscalingCluster, cluster_env

pytestmark = pytest.mark.slow

JOBS = 6
SLOTS_PER_WORKER = 4
IDLE_TIMEOUT_MINUTES = 0.1


@pytest.mark.timeout(200)
def test_queued_job_actors_bring_workers_that_leave_once_idle(tmp_path):
    ledger = tmp_path / "ledger"
    with FakeAutoscalingCluster(IDLE_TIMEOUT_MINUTES) as cluster:
        phase = subprocess.run(
            [sys.executable, "-m", "tests.cluster.autoscale_phase", cluster.address, str(tmp_path / "data"),
             str(ledger), str(JOBS)],
            cwd=REPO, env=cluster_env(), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert phase.returncode == 0, phase.stderr[-3000:] + cluster.log[-2000:]
    report = json.loads(phase.stdout.splitlines()[-1])
    print("autoscaling report:", report)
    assert report["workers_at_start"] == 0
    assert report["statuses"] == ["completed"] * JOBS
    assert (report["map_status"], report["map_succeeded"]) == ("completed", MAP_ITEMS)
    assert report["limits"][0] == MIN_ACTIVE_JOBS, "no job slot at start: admission at its floor"
    assert report["limits"][-1] > report["limits"][0], "admission grew as the autoscaler added workers"
    assert report["executor_nodes"] >= 2 and report["executors_on_workers"] >= 1, "the map grew onto a worker"
    needed = -(-(JOBS + 1) // SLOTS_PER_WORKER)
    assert report["peak_workers"] >= needed, f"{JOBS} job actors at {SLOTS_PER_WORKER} slots a worker"
    assert report["jobs_located"] >= JOBS - 2, "most running jobs' actors answered where they run"
    assert report["actor_nodes"] >= needed and report["actors_on_head"] == 0, "job actors ran on workers only"
    assert report["workers_at_end"] == 0, "idle workers were removed"
    lines = [line.split() for line in ledger.read_text().splitlines()]
    starts = Counter(line[0] for line in lines if line[3] == "start")
    assert len(starts) == JOBS and set(starts.values()) == {1}, "each job ran its node exactly once"
