"""Service processes for the schedules' tests (tests/actors/test_ray_schedules.py), the keeper's clock manual.

`python -m tests.actors.schedule_phase gateway RAY_ADDRESS DATA_DIR NAMESPACE REDIS_HOST REDIS_PORT` is a
second gateway process for the two-gateway test: it joins the test's Ray cluster, namespace, store and Redis,
prints "ready", and on a line from stdin ticks the keeper at the first two slots at once with the test's
own ticks; it prints as JSON the keeper's process id and the jobs its ticks started.

`python -m tests.actors.schedule_phase resume DATA_DIR` starts the service on the data the first life left,
tells the keeper the time (the fifth slot after the first passed 40 s ago), and prints as JSON how many
schedules the keeper loaded, what a second tick at that time started, and by catchup the slots of the
schedule's jobs (minutes after T0), its history's outcomes and its jobs' statuses."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from config.settings import Settings

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
QUICK = {
    "name": "quick",
    "nodes": [{"id": "echo", "type": "transform", "config": {"template": {"ok": True}}}],
}


def settings(data_dir: Path, **shared: str) -> Settings:
    return Settings(
        _env_file=None,
        **shared,
        DATA_DIR=str(data_dir),
        RAY_DASHBOARD="false",
        MAX_ACTIVE_JOBS="4",
        JOB_ACTOR_MODE="reuse",
        WARM_POOL_SIZE="1",
        EXECUTOR_POOL_SIZE="1",
        SCHEDULE_CLOCK="manual",
        LOG_LEVEL="WARNING",
    )


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


async def ended(runtime: ServiceRuntime, job_ids: list[str]) -> None:
    for _ in range(1200):
        jobs = await runtime.store.get_jobs(job_ids)
        if all(job.status.is_terminal for job in jobs):
            return
        await asyncio.sleep(0.05)


async def resume(data_dir: Path) -> None:
    runtime = await start_service_runtime(settings(data_dir))
    try:
        loaded = (await runtime.schedules.stats())["schedules"]
        now = minute(6) - timedelta(seconds=20)
        started = await runtime.schedules.tick(now)
        again = await runtime.schedules.tick(now)
        await ended(runtime, started)
        found = {}
        for schedule in (await runtime.store.list_schedules(None)).items:
            jobs = (await runtime.store.list_jobs(trigger_id=schedule.id)).items
            slots = sorted(round((_slot(job.idempotency_key) - T0).total_seconds() / 60) for job in jobs)
            found[schedule.catchup.value] = {
                "slots": slots,
                "history": [[e.outcome, e.dropped] for e in schedule.history],
                "statuses": sorted({job.status.value for job in jobs}),
            }
        print(json.dumps({"loaded": loaded, "again": again, "schedules": found}), flush=True)
    finally:
        await runtime.close()


async def gateway(address: str, data_dir: Path, namespace: str, redis_host: str, redis_port: str) -> None:
    shared = {"RAY_ADDRESS": address, "RAY_NAMESPACE": namespace, "REDIS_HOST": redis_host}
    runtime = await start_service_runtime(settings(data_dir, **shared, REDIS_PORT=redis_port))
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = [await runtime.schedules.tick(minute(n)) for n in (1, 2)]
        keeper = (await runtime.schedules.stats())["pid"]
        print(json.dumps({"keeper_pid": keeper, "started": started}), flush=True)
    finally:
        await runtime.close()


def _slot(key: str | None) -> datetime:
    assert key is not None
    return datetime.fromisoformat(key.split(":", 2)[2])


if __name__ == "__main__":
    if sys.argv[1] == "gateway":
        asyncio.run(gateway(sys.argv[2], Path(sys.argv[3]), *sys.argv[4:7]))
    else:
        assert sys.argv[1] == "resume", "the first life runs in the test's process"
        asyncio.run(resume(Path(sys.argv[2])))
