"""gateway-workers: what `serve --workers 2` gives over one gateway process on this 2-core machine.

The same load against each: CONCURRENCY clients read one page of workflows (authentication, a store
read, the JSON of LISTED workflows) as fast as the gateway answers, for DURATION_S after WARMUP_S. The
route is the gateway's own CPU, no job runs, so this is where more gateway processes can help; the load
generator shares the two cores. Each answer names the worker that made it (X-Gateway-Worker), to show
the load reached every worker.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.harness import SMALL_LLM_JOB
from bench.rest import client, gateway

WORKER_COUNTS = (1, 2)
CONCURRENCY = 32
LISTED = 20
WARMUP_S, DURATION_S = 3.0, 15.0
UNUSED_LLM_URL = "http://127.0.0.1:9"
WORKER_HEADER = "X-Gateway-Worker"


async def read_pages(http: aiohttp.ClientSession, until: float, served_by: Counter[str]) -> int:
    answered = 0
    while time.perf_counter() < until:
        async with http.get(f"/api/v1/workflows?limit={LISTED}") as page:
            page.raise_for_status()
            await page.read()
            served_by[page.headers[WORKER_HEADER]] += 1
        answered += 1
    return answered


async def requests_per_s(workers: int) -> tuple[float, Counter[str]]:
    with (
        tempfile.TemporaryDirectory(prefix="wf-bench-workers-") as data_dir,
        gateway(UNUSED_LLM_URL, data_dir, workers=workers) as service,
    ):
        async with client(service.url) as http:
            for _ in range(LISTED):
                async with http.post("/api/v1/workflows", json=SMALL_LLM_JOB) as created:
                    created.raise_for_status()
            warm: Counter[str] = Counter()
            await asyncio.gather(*(read_pages(http, time.perf_counter() + WARMUP_S, warm) for _ in range(8)))
            served_by: Counter[str] = Counter()
            started = time.perf_counter()
            until = started + DURATION_S
            counts = await asyncio.gather(*(read_pages(http, until, served_by) for _ in range(CONCURRENCY)))
            return sum(counts) / (time.perf_counter() - started), served_by


async def run() -> dict[str, Any]:
    rates: dict[int, float] = {}
    shares: dict[int, list[int]] = {}
    for workers in WORKER_COUNTS:
        rate, served_by = await requests_per_s(workers)
        rates[workers] = rate
        shares[workers] = sorted(served_by.values(), reverse=True)
    ratio = rates[2] / rates[1]
    return {
        "requests_per_s_1_worker": round(rates[1], 1),
        "requests_per_s_2_workers": round(rates[2], 1),
        "ratio": round(ratio, 2),
        "answers_by_worker_2_workers": shares[2],
        "target": "2 workers >= 1.2x one (2 cores, load generator on them)",
        "target_met": ratio >= 1.2 and len(shares[2]) == 2,
    }
