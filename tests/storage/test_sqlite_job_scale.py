"""What keeps the embedded store's job reads flat as jobs grow: listings and analytics search its indexes (a
query that scanned the jobs table or sorted its rows would cost more with every stored job; bench workload
`scale` measures the curves), and the bulk load that bench fills the store with."""

from __future__ import annotations

import sqlite3

import pytest

from engine.errors import ConflictError
from engine.records import JobChanges, JobStatus, NodeCheckpoint
from tests.storage.store_contract_support import at, job


async def test_job_listings_and_analytics_search_indexes(tmp_path, open_sqlite):
    path = tmp_path / "workflow.db"
    store = await open_sqlite(path)
    await store.create_job(job("a1"))
    await store.checkpoint("a1", 0, JobChanges(status=JobStatus.FAILED))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    await store.list_jobs(owner="alice")
    await store.list_jobs(owner="alice", status=JobStatus.FAILED)
    await store.list_jobs(owner="alice", status=[JobStatus.FAILED, JobStatus.CANCELLED])
    await store.list_jobs(status=JobStatus.FAILED)
    await store.job_analytics("alice", since=at(0))
    await store.workflow_analytics(None, since=at(0))
    store._conn.set_trace_callback(None)

    queries = [sql for sql in statements if sql.startswith("SELECT")]
    with sqlite3.connect(path) as raw:
        plans = {sql: [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}")] for sql in queries}
    slow = {sql: plan for sql, plan in plans.items() if any(_grows_with_jobs(step) for step in plan)}
    assert slow == {}
    assert not any("COUNT(*) FROM jobs" in sql for sql in queries), "totals come from job_counts"


def _grows_with_jobs(step: str) -> bool:
    return step.startswith(("SCAN jobs", "SCAN job_nodes")) or "TEMP B-TREE" in step


ASKED = {"ask": NodeCheckpoint(node_id="ask", node_type="llm", output={"text": "hi"}, started_at=at(1))}


async def test_a_bulk_load_stores_jobs_as_create_job_does_or_none_of_them(tmp_path, open_sqlite):
    store = await open_sqlite(tmp_path / "workflow.db")
    created = await store.create_job(job("one", created=1, nodes=ASKED))
    loaded = [job(f"bulk-{n}", created=2 + n, status=JobStatus.FAILED, nodes=ASKED) for n in range(3)]
    await store.load_jobs(loaded)

    assert await store.get_jobs([j.id for j in loaded]) == [await store.get_job(j.id) for j in loaded]
    assert (await store.get_job("bulk-0")).model_dump(
        exclude={"id", "created_at", "status"}
    ) == created.model_dump(exclude={"id", "created_at", "status"})
    page = await store.list_jobs(owner="alice", status=JobStatus.FAILED)
    assert ([j.id for j in page.items], page.total) == (["bulk-2", "bulk-1", "bulk-0"], 3)
    with pytest.raises(ConflictError, match="bulk-1"):
        await store.load_jobs([job("bulk-9", created=9), job("bulk-1", created=10)])
    assert (await store.list_jobs(owner="alice")).total == 4
