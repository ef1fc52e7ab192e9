"""The `scale` curves of stored work, read through a real gateway (`workflow-service serve`) over HTTP:
listing and analytics with 100 / 10,000 / 100,000 stored jobs, and (bench/scale_sse.py) replaying a job's
stream of 100 / 10,000 events over SSE.

The gateway and this process share the SQLite file and a Redis server this process starts (REDIS_HOST),
so the jobs are stored through the store's own bulk load (`load_jobs`: its rows, indexes and job counts
as `create_job` stores them) and the events published through the event bus, as the service itself does."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import median
from bench.rest import client, gateway
from bench.scale_curves import curve, flat
from engine.models import WorkflowDefinition
from engine.records import JobRecord, JobStatus, NodeCheckpoint, NodeStatus, utcnow
from storage.embedded_redis import EmbeddedRedis
from storage.redis_bus import RedisStreamBus
from storage.sqlite_store import SqliteStore
from storage.store_factory import SQLITE_FILE_NAME

STORED_JOBS = (100, 10_000, 100_000)
WORKFLOWS = 10
OWNER = "bench"
"""The token's subject (bench/rest.py): every stored job is this tenant's, the worst case for its listing."""
LIST_REQUESTS = 20
FULL_ANALYTICS_REQUESTS = 3
"""Analytics over every stored job takes seconds at 100,000 jobs: fewer samples of those."""
WINDOW_JOBS = 100
UNUSED_LLM_URL = "http://127.0.0.1:9"
GATEWAY_ENV = {"JOB_ACTOR_MODE": "dedicated", "WARM_POOL_SIZE": "1", "EXECUTOR_POOL_SIZE": "1"}
JOB_SPACING = timedelta(milliseconds=1)
LOAD_BATCH = 5000
"""Jobs per transaction of the bulk load (SqliteStore.load_jobs): the store's own rows, indexes and job
counts, at a tenth of create_job's cost per job, which reads each job back."""
WARM_UP_REQUESTS = 10


@dataclass
class StoredWork:
    """A gateway over a store and a bus this process writes to as well."""

    http: aiohttp.ClientSession
    store: SqliteStore
    bus: RedisStreamBus
    workflow_ids: list[str]


@asynccontextmanager
async def stored_work() -> AsyncIterator[StoredWork]:
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as data_dir:
        redis = EmbeddedRedis(Path(data_dir) / "bench-redis", fsync="everysec")
        redis.start()
        env = {**GATEWAY_ENV, "REDIS_HOST": redis.host, "REDIS_PORT": str(redis.port)}
        try:
            with gateway(UNUSED_LLM_URL, data_dir, extra_env=env) as service:
                async with client(service.url) as http:
                    store = SqliteStore(Path(data_dir) / SQLITE_FILE_NAME)
                    bus = RedisStreamBus(redis.host, redis.port)
                    await store.start()
                    await bus.start()
                    try:
                        yield StoredWork(http, store, bus, await _workflows(store))
                    finally:
                        await bus.close()
                        await store.close()
        finally:
            redis.stop()


async def _workflows(store: SqliteStore) -> list[str]:
    ids = []
    for n in range(WORKFLOWS):
        definition = WorkflowDefinition.model_validate(
            {"name": f"scale-{n}", "nodes": [{"id": "start", "type": "start"}]}
        )
        ids.append((await store.create_workflow(OWNER, definition)).id)
    return ids


def finished_job(index: int, workflow_id: str, created_at: datetime) -> JobRecord:
    """A finished three-node job (start -> llm -> end); one in ten failed, one in fifty cancelled."""
    status = (
        JobStatus.FAILED
        if index % 10 == 0
        else JobStatus.CANCELLED
        if index % 50 == 1
        else JobStatus.COMPLETED
    )
    nodes = {
        node_id: NodeCheckpoint(
            node_id=node_id,
            node_type=node_type,
            status=NodeStatus.COMPLETED,
            attempts=1,
            output={"text": f"answer {index}"} if node_type == "llm" else {},
            started_at=created_at,
            finished_at=created_at + timedelta(milliseconds=5 + index % 17),
            usage={"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
            if node_type == "llm"
            else None,
        )
        for node_id, node_type in (("start", "start"), ("ask", "llm"), ("end", "end"))
    }
    return JobRecord(
        id=f"scale-{index:07d}",
        owner=OWNER,
        workflow_id=workflow_id,
        workflow_version=1,
        status=status,
        input={"n": index},
        result={"answer": f"answer {index}"},
        created_at=created_at,
        started_at=created_at,
        finished_at=created_at + timedelta(milliseconds=20 + index % 31),
        nodes=nodes,
    )


async def _request_ms(http: aiohttp.ClientSession, path: str, params: Mapping[str, str]) -> float:
    started = time.perf_counter()
    async with http.get(path, params=params) as answer:
        answer.raise_for_status()
        await answer.read()
    return (time.perf_counter() - started) * 1000


async def _p50_ms(http: aiohttp.ClientSession, path: str, requests: int, **params: str) -> float:
    return median([await _request_ms(http, path, params) for _ in range(requests)])


async def _warm_up(work: StoredWork, window_start: datetime) -> None:
    """Requests of each cheap kind, untimed: the gateway's first requests after its start cost it several
    times more (imports, caches, connections), which would count against the smallest store."""
    since = window_start.isoformat()
    for path, params in (
        ("/api/v1/jobs", {"limit": "50"}),
        ("/api/v1/jobs", {"limit": "10", "status": "failed"}),
        ("/api/v1/analytics/jobs", {"since": since}),
        ("/api/v1/analytics/workflows", {"since": since}),
    ):
        for _ in range(WARM_UP_REQUESTS):
            await _request_ms(work.http, path, params)


@dataclass(frozen=True)
class ReadCosts:
    list_ms: float
    list_failed_ms: float
    jobs_window_ms: float
    workflows_window_ms: float
    jobs_all_ms: float
    workflows_all_ms: float


async def _read_costs(work: StoredWork, window_start: datetime) -> ReadCosts:
    http, since = work.http, window_start.isoformat()
    return ReadCosts(
        list_ms=await _p50_ms(http, "/api/v1/jobs", LIST_REQUESTS, limit="50"),
        list_failed_ms=await _p50_ms(http, "/api/v1/jobs", LIST_REQUESTS, limit="10", status="failed"),
        jobs_window_ms=await _p50_ms(http, "/api/v1/analytics/jobs", LIST_REQUESTS, since=since),
        workflows_window_ms=await _p50_ms(http, "/api/v1/analytics/workflows", LIST_REQUESTS, since=since),
        jobs_all_ms=await _p50_ms(http, "/api/v1/analytics/jobs", FULL_ANALYTICS_REQUESTS),
        workflows_all_ms=await _p50_ms(http, "/api/v1/analytics/workflows", FULL_ANALYTICS_REQUESTS),
    )


async def store_curves(work: StoredWork) -> dict[str, Any]:
    """Grow the store to each size in turn and read it at each: one store, one gateway, one run."""
    first = utcnow() - timedelta(days=1)
    costs: dict[int, ReadCosts] = {}
    fill_s: dict[int, float] = {}
    stored = 0
    for size in STORED_JOBS:
        started = time.perf_counter()
        for batch in range(stored, size, LOAD_BATCH):
            indexes = range(batch, min(size, batch + LOAD_BATCH))
            await work.store.load_jobs(
                [finished_job(n, work.workflow_ids[n % WORKFLOWS], first + n * JOB_SPACING) for n in indexes]
            )
        fill_s[size], stored = time.perf_counter() - started, size
        window_start = first + (size - WINDOW_JOBS) * JOB_SPACING
        await _warm_up(work, window_start)
        costs[size] = await _read_costs(work, window_start)
    figures = {
        **curve("list_p50_ms", {n: c.list_ms for n, c in costs.items()}),
        **curve("list_failed_p50_ms", {n: c.list_failed_ms for n, c in costs.items()}),
        **curve("analytics_jobs_window_p50_ms", {n: c.jobs_window_ms for n, c in costs.items()}),
        **curve("analytics_workflows_window_p50_ms", {n: c.workflows_window_ms for n, c in costs.items()}),
        **curve("analytics_jobs_all_us_per_job", {n: c.jobs_all_ms * 1000 / n for n, c in costs.items()}, 1),
        **curve(
            "analytics_workflows_all_us_per_job",
            {n: c.workflows_all_ms * 1000 / n for n, c in costs.items()},
            1,
        ),
    }
    return {
        **figures,
        "analytics_jobs_all_p50_ms": {str(n): round(c.jobs_all_ms, 1) for n, c in costs.items()},
        "analytics_workflows_all_p50_ms": {str(n): round(c.workflows_all_ms, 1) for n, c in costs.items()},
        "fill_s": {str(n): round(s, 1) for n, s in fill_s.items()},
        "note": "one tenant's finished 3-node jobs in the embedded SQLite store, read over HTTP: "
        "GET /api/v1/jobs?limit=50 (and ?limit=10&status=failed: a tenth of the jobs failed, so the "
        f"smallest store fills that page too); both analytics endpoints over the newest {WINDOW_JOBS} "
        "jobs (?since=) and over every job, whose cost is per stored job: exact percentiles read every "
        "job in the range",
        "target": "every ratio <= 1.5 (analytics over every job: per stored job)",
        "target_met": flat(figures),
    }
