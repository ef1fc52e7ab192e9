"""The schedule keeper on a real local Ray, its clock in the test's hands (SCHEDULE_CLOCK=manual: `tick`
fires through the same code the system clock does): every slot of a per-minute schedule fires once; a
restart of the service's actors across due slots applies each catchup; two gateways share one keeper and
fire each slot once; each overlap."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from engine.models import WorkflowDefinition
from engine.records import JobRecord, JobStatus, TriggerRef
from engine.schedules import Catchup, Overlap, ScheduleRecord, idempotency_key
from tests.cluster.fake_cluster import REPO, cluster_env
from tests.support.ray_jobs import RuntimeFactory, finished, service_phase, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
MANUAL = {"SCHEDULE_CLOCK": "manual", "JOB_ACTOR_MODE": "reuse"}
PHASE = "tests.actors.schedule_phase"
QUICK = {
    "name": "quick",
    "nodes": [{"id": "echo", "type": "transform", "config": {"template": {"ok": True}}}],
}
WAITING = {"name": "waiting", "nodes": [{"id": "review", "type": "approval", "config": {"message": "ok?"}}]}


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


async def workflow(runtime: ServiceRuntime, definition: dict[str, Any]) -> str:
    return (await runtime.store.create_workflow("alice", WorkflowDefinition.model_validate(definition))).id


async def scheduled(runtime: ServiceRuntime, workflow_id: str, **settings: Any) -> ScheduleRecord:
    schedule = ScheduleRecord(
        owner="alice",
        owner_roles=["ops"],
        workflow_id=workflow_id,
        since=T0,
        cron="* * * * *",
        input={"from": "schedule"},
        **settings,
    )
    await runtime.store.create_schedule(schedule)
    await runtime.schedules.changed(schedule.id)
    return schedule


def redis_of(runtime: ServiceRuntime) -> dict[str, Any]:
    """Settings for another runtime on the same data: one embedded Redis owns a data directory."""
    return {"REDIS_HOST": runtime.runtime.redis_host, "REDIS_PORT": runtime.runtime.redis_port}


async def jobs_of(runtime: ServiceRuntime, schedule_id: str) -> list[JobRecord]:
    return list(reversed((await runtime.store.list_jobs(trigger_id=schedule_id, limit=500)).items))


async def test_a_schedule_every_minute_fires_each_slot_once(make_runtime: RuntimeFactory):
    runtime = await make_runtime(**MANUAL)
    schedule = await scheduled(runtime, await workflow(runtime, QUICK), overlap=Overlap.ALLOW)
    for now in (minute(0.5), minute(1), minute(1.2), minute(2.01), minute(2.5), minute(3), minute(3)):
        await runtime.schedules.tick(now)
    jobs = await jobs_of(runtime, schedule.id)
    assert [job.idempotency_key for job in jobs] == [
        idempotency_key(schedule.id, minute(m)) for m in (1, 2, 3)
    ]
    for job in jobs:
        assert job.trigger == TriggerRef(kind="schedule", id=schedule.id)
        assert (job.owner, job.owner_roles, job.input) == ("alice", ["ops"], {"from": "schedule"})
        assert (await wait_for(runtime, job.id, finished)).status is JobStatus.COMPLETED
    stored = await runtime.store.get_schedule(schedule.id)
    assert (stored.last_slot, stored.last_job_id) == (minute(3), jobs[-1].id)
    assert [(e.outcome, e.slot, e.job_id) for e in stored.history] == [
        ("started", minute(m), job.id) for m, job in zip((1, 2, 3), jobs, strict=True)
    ]
    assert (await runtime.schedules.stats())["next_due"] == minute(4)


@pytest.mark.timeout(180)
async def test_a_service_and_ray_restart_across_due_slots_applies_each_catchup(
    make_runtime: RuntimeFactory, tmp_path
):
    """The first life fires slot 1 of a schedule per catchup and stops: its actors ended, its runtime closed.
    The second is the whole service again on a Ray of its own (tests/actors/schedule_phase.py), started when
    the fifth slot after the first passed 40 s ago, so all five are late."""
    data = tmp_path / "data"
    runtime = await make_runtime(**MANUAL, DATA_DIR=data)
    workflow_id = await workflow(runtime, QUICK)
    for catchup in Catchup:
        await scheduled(runtime, workflow_id, catchup=catchup, overlap=Overlap.ALLOW)
    for job_id in await runtime.schedules.tick(minute(1)):
        await wait_for(runtime, job_id, finished)
    for name in ray_api.named_actors(runtime.runtime.namespace):
        handle = ray_api.get_actor(name, runtime.runtime.namespace)
        assert handle is not None
        ray_api.kill(handle)
    await runtime.close()

    resumed = json.loads(await asyncio.to_thread(service_phase, "resume", str(data), module=PHASE))
    assert (resumed["loaded"], resumed["again"]) == (3, [])
    found, done = resumed["schedules"], ["completed"]
    assert found["none"] == {
        "slots": [1],
        "history": [["started", 0], ["dropped", 4]],
        "statuses": done,
    }
    assert found["latest"] == {
        "slots": [1, 5],
        "history": [["started", 0], ["dropped", 3], ["started", 0]],
        "statuses": done,
    }
    assert found["all"] == {
        "slots": [1, 2, 3, 4, 5],
        "history": [["started", 0]] * 5,
        "statuses": done,
    }


async def test_two_gateway_processes_find_one_keeper_and_fire_each_slot_once(
    make_runtime: RuntimeFactory, ray_cluster: ray_api.ClusterInfo, tmp_path
):
    """The second gateway is another process, a Ray driver of its own on the same cluster, namespace,
    store and Redis: it finds the keeper by name, and both processes' ticks at once start each slot's job
    once."""
    namespace = f"sched-{id(tmp_path):x}"
    first = await make_runtime(**MANUAL, DATA_DIR=tmp_path / "shared", RAY_NAMESPACE=namespace)
    schedule = await scheduled(first, await workflow(first, QUICK), overlap=Overlap.ALLOW)
    redis = redis_of(first)
    second = await asyncio.create_subprocess_exec(
        sys.executable, "-m", PHASE, "gateway", ray_cluster.address, str(tmp_path / "shared"), namespace,
        str(redis["REDIS_HOST"]), str(redis["REDIS_PORT"]),
        cwd=REPO, env=cluster_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert second.stdin is not None and second.stdout is not None
    try:
        assert (await asyncio.wait_for(second.stdout.readline(), 60)).strip() == b"ready"
        second.stdin.write(b"go\n")
        await second.stdin.drain()
        ours = await asyncio.gather(*(first.schedules.tick(minute(n)) for n in (1, 2)))
        theirs = json.loads(await asyncio.wait_for(second.stdout.readline(), 60))
    finally:
        if second.returncode is None:
            await asyncio.wait_for(second.wait(), 30)
    assert theirs["keeper_pid"] == (await first.schedules.stats())["pid"], "one keeper for both"
    jobs = await jobs_of(first, schedule.id)
    assert [job.idempotency_key for job in jobs] == [idempotency_key(schedule.id, minute(m)) for m in (1, 2)]
    assert sorted(job_id for started in [*ours, *theirs["started"]] for job_id in started) == sorted(
        job.id for job in jobs
    ), "each slot's job was started by one of the two ticks, never both"
    again = await first.controller.create_job(
        schedule.workflow_id, {}, "alice", idempotency_key(schedule.id, minute(2)), trigger=jobs[-1].trigger
    )
    assert again.id == jobs[-1].id, "whoever fires a slot again gets its job back, not a second one"


async def test_each_overlap(make_runtime: RuntimeFactory):
    runtime = await make_runtime(**MANUAL)
    waiting = await workflow(runtime, WAITING)
    schedules = {o: await scheduled(runtime, waiting, overlap=o) for o in Overlap}
    await runtime.schedules.tick(minute(1))
    first = {o: (await jobs_of(runtime, s.id))[0] for o, s in schedules.items()}
    await runtime.schedules.tick(minute(2))
    after = {o: await jobs_of(runtime, s.id) for o, s in schedules.items()}

    assert [j.id for j in after[Overlap.SKIP]] == [first[Overlap.SKIP].id]
    skip = await runtime.store.get_schedule(schedules[Overlap.SKIP].id)
    assert [(e.outcome, e.slot, e.job_id) for e in skip.history] == [
        ("started", minute(1), first[Overlap.SKIP].id),
        ("skipped", minute(2), first[Overlap.SKIP].id),
    ]
    assert skip.last_slot == minute(2)

    assert len(after[Overlap.ALLOW]) == 2
    assert not (await runtime.store.get_job(first[Overlap.ALLOW].id)).status.is_terminal

    cancelled, started = after[Overlap.CANCEL_PREVIOUS]
    assert cancelled.id == first[Overlap.CANCEL_PREVIOUS].id
    assert (await wait_for(runtime, cancelled.id, finished)).status is JobStatus.CANCELLED
    assert not (await runtime.store.get_job(started.id)).status.is_terminal
    for jobs in after.values():
        for job in jobs:
            if not job.status.is_terminal:
                await runtime.controller.cancel_job(job.id)
