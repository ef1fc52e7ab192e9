"""jobs500, events and memory: small durable jobs through the REST gateway, each watched over SSE.

The gateway runs as its own process (`workflow-service serve`), as in production; this process is
only the load: 500 jobs (start -> transform -> llm at 0 ms -> end), 50 in flight, reuse mode. While
it runs, every process of the service (gateway, Ray, executors, job actors, Redis) is sampled for RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from jose import jwt

from bench.fanout import llm_server
from bench.harness import RssSampler, median, percentile

JOBS, IN_FLIGHT = 500, 50
SECRET = "bench-secret"
SMALL_LLM_JOB = {
    "name": "jobs500",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "shape", "type": "transform", "config": {"template": {"q": "question {{input.n}}"}}},
        {"id": "ask", "type": "llm", "config": {"model": "bench", "prompt": "{{shape.output.q}}"}},
        {"id": "end", "type": "end", "config": {"output": {"answer": "{{ask.output.text}}"}}},
    ],
    "edges": [
        {"source": "start", "target": "shape"},
        {"source": "shape", "target": "ask"},
        {"source": "ask", "target": "end"},
    ],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def token() -> str:
    claims = {"sub": "bench", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextmanager
def gateway(llm_url: str, data_dir: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": data_dir,
        "JWT_SECRET": SECRET,
        "JOB_ACTOR_MODE": "reuse",
        "WARM_POOL_SIZE": "8",
        "MAX_ACTIVE_JOBS": str(IN_FLIGHT),
        "MODEL_SERVICE_URL": llm_url,
        "LLM_MAX_CONCURRENCY": "200",
        "RAY_DASHBOARD": "false",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@asynccontextmanager
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=IN_FLIGHT * 2 + 10, max_keepalive_connections=IN_FLIGHT * 2)
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits) as http:
        deadline = time.monotonic() + 120
        while True:
            try:
                if (await http.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become healthy in 120 s")
            await asyncio.sleep(0.5)
        yield http


async def watch(http: httpx.AsyncClient, job_id: str, event_lags: list[float]) -> None:
    """Follow a job's SSE stream to its end, recording how long each node_completed took to arrive."""
    async with http.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event["type"] == "node_completed":
                    sent = datetime.fromisoformat(event["time"])
                    event_lags.append((datetime.now(UTC) - sent).total_seconds() * 1000)


async def run_jobs(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    gate = asyncio.Semaphore(IN_FLIGHT)
    latencies: list[float] = []
    event_lags: list[float] = []
    failures = 0

    async def one(n: int) -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            answer = await http.post(f"/api/v1/workflows/{workflow_id}/execute", json={"n": n})
            answer.raise_for_status()
            job_id = answer.json()["id"]
            await watch(http, job_id, event_lags)
            latencies.append((time.perf_counter() - started) * 1000)
            if (await http.get(f"/api/v1/jobs/{job_id}")).json()["status"] != "completed":
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(JOBS)))
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "latencies": latencies, "event_lags": event_lags, "failures": failures}


async def run() -> dict[str, dict[str, Any]]:
    with (
        llm_server(latency_s=0.0) as llm_url,
        tempfile.TemporaryDirectory(prefix="wf-bench-") as data_dir,
        gateway(llm_url, data_dir) as (base_url, gateway_pid),
    ):
        async with client(base_url) as http:
            created = await http.post("/api/v1/workflows", json=SMALL_LLM_JOB)
            created.raise_for_status()
            workflow_id = created.json()["id"]
            await asyncio.sleep(3)
            sampler = RssSampler(gateway_pid)
            sampler.start()
            figures = await run_jobs(http, workflow_id)
            sampler.stop()
    latencies, lags = figures["latencies"], figures["event_lags"]
    jobs_per_s = JOBS / figures["elapsed"]
    p50, p99 = median(latencies), percentile(latencies, 99)
    lag50, lag99 = median(lags), percentile(lags, 99)
    per_job_mb = (sampler.peak - sampler.baseline) / IN_FLIGHT / 2**20
    return {
        "jobs500": {
            "jobs_per_s": round(jobs_per_s, 1),
            "submit_to_completed_p50_ms": round(p50, 1),
            "submit_to_completed_p99_ms": round(p99, 1),
            "failed_jobs": figures["failures"],
            "target": ">= 80 jobs/s; p50 <= 150 ms; p99 <= 1 s (REST + SSE, reuse mode)",
            "target_met": jobs_per_s >= 80 and p50 <= 150 and p99 <= 1000 and figures["failures"] == 0,
        },
        "events": {
            "node_finished_to_sse_p50_ms": round(lag50, 2),
            "node_finished_to_sse_p99_ms": round(lag99, 2),
            "samples": len(lags),
            "target": "p50 <= 5 ms, p99 <= 50 ms",
            "target_met": lag50 <= 5 and lag99 <= 50,
        },
        "memory-jobs500": {
            "service_rss_baseline_mb": round(sampler.baseline / 2**20),
            "service_rss_peak_mb": round(sampler.peak / 2**20),
            "mb_per_active_job_beyond_baseline": round(per_job_mb, 1),
            "target": "reported; <= 100 MB per active job beyond Ray's own",
            "target_met": per_job_mb <= 100,
        },
    }
