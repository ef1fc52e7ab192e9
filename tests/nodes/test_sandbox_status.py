"""What the sandbox reports about itself, and code nodes refusing to run where a part of it is missing
(a cgroup parent that does not exist is a real missing cgroup, as on a v2 machine without delegation)."""

from __future__ import annotations

import logging
import os

import pytest

from engine.errors import SandboxError
from engine.records import LogLevel
from nodes.code import UNSANDBOXED_WARNING
from nodes.sandbox import SandboxLimits, run_python, sandbox_status
from nodes.settings import NodeSettings
from tests.nodes.code_node_support import Run

MISSING_PARENT = "no-such-parent-of-the-sandbox"
SECCOMP_MODE = "def process():\n    return open('/proc/self/status').read().split('Seccomp:')[1].split()[0]\n"


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the full sandbox needs root")


async def test_the_status_reports_every_part_working_here():
    status = await sandbox_status()
    assert status.problem is None, status
    report = status.report()
    assert report["ok"] is True and report["detail"] is None
    assert set(report["parts"]) == {"bubblewrap", "seccomp", "cgroups", "landlock"}
    assert all(part["ok"] for part in report["parts"].values())
    assert "memory" in report["parts"]["cgroups"]["detail"] and "pids" in report["parts"]["cgroups"]["detail"]


async def test_without_a_cgroup_per_run_code_refuses_unless_allowed(caplog):
    status = await sandbox_status(MISSING_PARENT)
    assert status.problem is not None and status.problem.startswith("no cgroup per run (")
    assert MISSING_PARENT in status.problem
    assert status.report()["parts"]["cgroups"]["ok"] is False
    limits = SandboxLimits(wall_clock_s=10)
    with pytest.raises(
        SandboxError, match=r"^cannot run code: no cgroup per run \(.*SANDBOX_ALLOW_UNSANDBOXED"
    ):
        await run_python(SECCOMP_MODE, {}, limits, cgroup_parent=MISSING_PARENT)
    with caplog.at_level(logging.WARNING, logger="nodes.sandbox.policy"):
        result = await run_python(
            SECCOMP_MODE, {}, limits, allow_unsandboxed=True, cgroup_parent=MISSING_PARENT
        )
    assert result.output == "2", "allowed, it still runs in bubblewrap under the seccomp filter"
    assert "weaker sandbox (bubblewrap): no cgroup per run" in caplog.text


async def test_the_code_node_names_the_missing_part_when_it_refuses():
    run = Run()
    config = {"code": "def process(x):\n    return x + 1\n", "input_mapping": {"x": 1}}
    refusing = NodeSettings(SANDBOX_CGROUP_PARENT=MISSING_PARENT)
    with pytest.raises(SandboxError, match=r"^cannot run code: no cgroup per run"):
        await run(config, node_settings=refusing)
    allowing = NodeSettings(SANDBOX_CGROUP_PARENT=MISSING_PARENT, SANDBOX_ALLOW_UNSANDBOXED=True)
    assert (await run(config, node_settings=allowing)).output == 2
    [(level, message, _)] = run.logs
    assert level is LogLevel.WARNING
    assert message.startswith(f"{UNSANDBOXED_WARNING}: no cgroup per run (")
