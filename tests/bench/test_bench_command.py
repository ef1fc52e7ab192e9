"""`python -m bench` as a developer runs it: a real workload on a real (separate) Ray instance, the
table on stdout and the JSON the README describes. Speed is not asserted here: the targets live in
the benchmark's own figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_chosen_workload_prints_its_table_row_and_writes_its_figures(tmp_path):
    out = tmp_path / "results.json"
    done = bench("--workloads", "chain100", "--out", str(out), "--settle-limit", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "chain100" in done.stdout and "per-step <=" in done.stdout
    figures = json.loads(out.read_text())["workloads"]["chain100"]
    assert set(figures) >= {"per_step_ms_median", "commits_per_job", "floor", "target", "target_met"}
    assert figures["per_step_ms_median"] > 0 and figures["floor"] > 0
    assert isinstance(figures["target_met"], bool)


@pytest.mark.timeout(60)
def test_an_unknown_workload_is_refused_by_name(tmp_path):
    done = bench("--workloads", "chain100,nope", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert "unknown workloads: nope" in done.stderr
    assert not (tmp_path / "x.json").exists()
