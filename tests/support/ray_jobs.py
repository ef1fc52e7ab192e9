"""Jobs on a service runtime over the real local Ray of the test session: its settings, the recording
node types of tests/actors/ray_test_nodes.py, and waiting for a job to get somewhere."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from config.settings import Settings
from engine.models import WorkflowDefinition
from engine.records import JobRecord
from tests.actors.ray_test_nodes import PLUGINS
from tests.support import ray_test_api
from tests.support.waiting import wait_until

RuntimeFactory = Callable[..., Awaitable[ServiceRuntime]]
"""Starts a service runtime on the session's Ray with these setting overrides (the `make_runtime` fixture)."""


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """A runtime's settings for a test: its own namespace and data, the test plugins, and warm runners
    (reuse mode), since a dedicated actor per job costs a process start of seconds here; the tests of
    dedicated actors say so."""
    values = {
        "DATA_DIR": str(data_dir),
        "RAY_NAMESPACE": f"wf-test-{uuid.uuid4().hex[:8]}",
        "RAY_DASHBOARD": "false",
        "MAX_ACTIVE_JOBS": "4",
        "JOB_ACTOR_MODE": "reuse",
        "WARM_POOL_SIZE": "1",
        "EXECUTOR_POOL_SIZE": "1",
        "NODE_PLUGINS": ",".join(PLUGINS),
        "LOG_LEVEL": "WARNING",
    }
    values.update({key: str(value) for key, value in overrides.items()})
    return Settings(_env_file=None, **values)


def record(node_id: str, ledger: Path, kind: str = "record_io", **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "config": {"path": str(ledger), **config}}


def chain(*node_ids: str) -> list[tuple[str, str]]:
    return list(itertools.pairwise(node_ids))


async def execute(
    runtime: ServiceRuntime,
    nodes: list[dict[str, Any]],
    edges: list[tuple[str, str]],
    name: str = "runtime-test",
) -> JobRecord:
    definition = WorkflowDefinition.model_validate(
        {"name": name, "nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    )
    workflow = await runtime.store.create_workflow("alice", definition)
    return await runtime.controller.execute_workflow(workflow.id, {"q": 1}, owner="alice")


async def wait_for(
    runtime: ServiceRuntime, job_id: str, predicate: Callable[[JobRecord], bool], timeout_s: float = 60
) -> JobRecord:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = await runtime.controller.get_job_status(job_id)
        if predicate(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"job {job_id} did not get there in {timeout_s} s: {job.status}, "
                f"{ {n: c.status.value for n, c in job.nodes.items()} }"
            )
        await asyncio.sleep(0.05)


def finished(job: JobRecord) -> bool:
    return job.status.is_terminal


async def end_runtime(runtime: ServiceRuntime) -> None:
    """Kill the actors a test's runtime started (they are detached: its close leaves them), then close it."""
    for name in ray_api.named_actors(runtime.runtime.namespace):
        handle = ray_api.get_actor(name, runtime.runtime.namespace)
        if handle is not None:
            ray_api.kill(handle)
    await runtime.close()


async def job_actor(runtime: ServiceRuntime, job_id: str) -> ray_api.JobActorHandle:
    """The actor running the job now (its own, or the runner it shares), as its checkpoint names it."""
    name = (await runtime.store.get_job(job_id)).actor_name
    handle = ray_api.get_actor(name, runtime.runtime.namespace) if name else None
    assert handle is not None, f"job {job_id} names no live actor ({name})"
    return ray_api.JobActorHandle(handle)


def manager_pid(runtime: ServiceRuntime) -> int | None:
    """The process of the job manager that is alive now (None while Ray restarts it)."""
    actors = ray_test_api.list_actors(runtime.cluster.dashboard_url, runtime.runtime.namespace, "job-manager")
    return next((actor["pid"] for actor in actors if actor["name"] == "job-manager"), None)


def service_phase(*args: str, timeout_s: float = 150, module: str = "tests.actors.service_phase") -> str:
    """Run one life of the whole service (`module`: tests/actors/service_phase.py unless told) in a process
    of its own, with its own local Ray; the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


async def restart_manager(runtime: ServiceRuntime) -> dict[str, Any]:
    """Kill the job manager the way a crash would, wait until Ray has restarted it, start it (it recovers)
    and return its stats."""
    manager = ray_api.get_actor(ray_api.MANAGER_NAME, runtime.runtime.namespace)
    assert manager is not None
    killed_pid = manager_pid(runtime)
    assert killed_pid is not None, "the state API lists the manager"
    ray_test_api.kill_for_restart(manager)
    assert await wait_until(lambda: manager_pid(runtime) not in (None, killed_pid), timeout_s=30), "restarted"
    return await ray_api.JobManagerHandle(manager).start()
