"""Losing the machine that runs a job: on a three-node cluster (`ray.cluster_utils.Cluster`, in a
subprocess), the worker node hosting a job's actor is removed while the job's third of five nodes
runs. Ray restarts the actor on the other worker, it resumes from the checkpoint, and the job completes
without running again any node that had completed (the ledger counts every start, in any process)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.cluster.fake_cluster import REPO, cluster_env

pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
def test_a_job_survives_the_loss_of_its_actors_node(tmp_path):
    ledger = tmp_path / "ledger"
    phase = subprocess.run(
        [sys.executable, "-m", "tests.cluster.failover_phase", str(tmp_path / "data"), str(ledger)],
        cwd=REPO, env=cluster_env(), capture_output=True, text=True, timeout=140,
    )  # fmt: skip
    assert phase.returncode == 0, phase.stderr[-4000:]
    report = json.loads(phase.stdout.splitlines()[-1])
    print("node failure report:", report)
    assert report["status"] == "completed", report["error"]
    assert report["actor_was_on_a_worker"] and report["actor_moved_node"] and report["actor_node_alive_after"]
    assert report["completed_before"] == ["n1", "n2"]
    starts = Counter(
        line.split()[1] for line in ledger.read_text().splitlines() if line.split()[3] == "start"
    )
    assert starts["n1"] == starts["n2"] == 1, "completed nodes never ran again"
    assert starts["n4"] == starts["n5"] == 1
    assert starts["n3"] in (1, 2), "the node in flight ran again at most once"
    attempts = {line.split()[2] for line in ledger.read_text().splitlines()}
    assert attempts == {"1"}, "a rerun keeps its attempt number, so its idempotency key"
    assert set(report["attempts"].values()) == {1}
