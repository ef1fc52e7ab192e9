"""Jobs that wait, on a real local Ray: a suspended job holds no actor and no admission slot and resumes on
another actor; signals survive kill -9 of the job actor and a restart of the job manager. (A timer due
while the whole service and Ray were stopped: tests/actors/test_ray_runtime.py's full-restart test.)"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from engine.records import EventType, JobRecord, JobStatus, SignalRecord
from tests.support.ray_jobs import (
    execute,
    finished,
    job_actor,
    record,
    restart_manager,
    wait_for,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

APPROVAL = {"id": "review", "type": "approval", "config": {"message": "ok?"}}


def waiting(job: JobRecord) -> bool:
    return bool(job.waiting_on)


def starts(ledger: Path) -> list[str]:
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return [line.split()[1] for line in lines if line.split()[3] == "start"]


async def send(runtime: ServiceRuntime, job_id: str, name: str, payload: dict[str, Any]) -> None:
    job = await runtime.store.get_job(job_id)
    await runtime.controller.signal_job(job, name, payload, "alice", idempotency_key=uuid.uuid4().hex)


async def suspended(runtime: ServiceRuntime, job_id: str) -> JobRecord:
    """The job once it waits and its run has ended (the manager counts it suspended)."""
    job = await wait_for(runtime, job_id, waiting)
    assert await wait_until(lambda: _suspended_count(runtime), timeout_s=20)
    return job


async def _suspended_count(runtime: ServiceRuntime) -> bool:
    stats = await runtime.controller.stats()
    return stats["suspended"] >= 1 and stats["active"] == 0


@pytest.mark.parametrize("mode", ["dedicated", "reuse"])
@pytest.mark.timeout(120)
async def test_a_suspended_job_holds_no_actor_and_resumes_on_another(make_runtime, tmp_path, mode):
    runtime = await make_runtime(JOB_ACTOR_MODE=mode, MAX_ACTIVE_JOBS=1, WARM_POOL_SIZE=1)
    ledger = tmp_path / "ledger"
    job = await execute(
        runtime,
        [record("before", ledger), APPROVAL, record("after", ledger)],
        [("before", "review"), ("review", "after")],
    )
    held = await suspended(runtime, job.id)
    assert held.status is JobStatus.RUNNING and held.waiting_on == ["review"]
    stats = await runtime.controller.stats()
    assert (stats["active"], stats["suspended"]) == (0, 1)
    if mode == "dedicated":
        assert held.actor_name not in ray_api.named_actors(runtime.runtime.namespace), "its actor ended"
    else:
        (runner,) = [
            n for n in ray_api.named_actors(runtime.runtime.namespace) if n.startswith("job-runner:")
        ]
        raw = ray_api.get_actor(runner, runtime.runtime.namespace)
        assert raw is not None
        assert job.id not in (await ray_api.JobActorHandle(raw).info())["current_jobs"], "its coroutine ended"

    other = await execute(runtime, [record("solo", ledger)], [])
    assert (await wait_for(runtime, other.id, finished)).status is JobStatus.COMPLETED, "the one slot is free"

    await send(runtime, job.id, "review", {"approved": True})
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.nodes["review"].output["approved"] is True
    assert starts(ledger).count("before") == 1, "a node completed before the wait never ran again"


@pytest.mark.timeout(120)
async def test_kill_9_of_the_job_actor_while_it_waits_loses_no_signal(make_runtime, tmp_path):
    runtime = await make_runtime()
    ledger = tmp_path / "ledger"
    hook = {"id": "hook", "type": "wait", "config": {"signal": "paid"}}
    job = await execute(runtime, [record("busy", ledger, seconds=3.0), hook], [])
    await wait_for(runtime, job.id, waiting)
    info = await (await job_actor(runtime, job.id)).info()
    await send(runtime, job.id, "paid", {"amount": 3})
    os.kill(int(info["pid"]), signal.SIGKILL)

    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.nodes["hook"].output == {"amount": 3}
    events = [e async for e in runtime.bus.subscribe(job.id)]
    taken = [e for e in events if e.type == EventType.SIGNAL_RECEIVED]
    assert len(taken) == 1, "the signal was taken exactly once"
    completed = [e for e in events if e.type == EventType.NODE_COMPLETED and e.node_id == "hook"]
    assert len(completed) == 1


@pytest.mark.timeout(120)
async def test_a_restarted_manager_resumes_suspended_jobs_for_stored_signals_and_due_timers(
    make_runtime, tmp_path
):
    """The signal is stored but the manager never told of it (it died first): its successor finds it."""
    runtime = await make_runtime()
    signalled = await execute(runtime, [APPROVAL], [], name="signalled")
    timed = await execute(
        runtime, [{"id": "nap", "type": "wait", "config": {"delay_s": 6}}], [], name="timed"
    )
    for job in (signalled, timed):
        await wait_for(runtime, job.id, waiting)
    assert await wait_until(lambda: _stats_say(runtime, suspended=2), timeout_s=20)

    await runtime.store.put_signal(
        SignalRecord(
            id=uuid.uuid4().hex,
            job_id=signalled.id,
            name="review",
            payload={"approved": True},
            sender="alice",
        )
    )
    stats = await restart_manager(runtime)
    assert stats["timers"] == 1, "the timer was read back from the checkpoint"

    done = await wait_for(runtime, signalled.id, finished)
    assert done.status is JobStatus.COMPLETED and done.nodes["review"].output["approved"] is True
    woke = await wait_for(runtime, timed.id, finished)
    assert woke.status is JobStatus.COMPLETED
    wait = woke.nodes["nap"].wait
    assert wait is not None and wait.deadline is not None
    assert datetime.fromisoformat(woke.nodes["nap"].output) >= wait.deadline


async def _stats_say(runtime: ServiceRuntime, suspended: int) -> bool:
    return (await runtime.controller.stats())["suspended"] == suspended
