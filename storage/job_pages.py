"""Every job a listing matches, read page by page: for callers that need them all (recovery, cancelling a
job's children, the approvals inbox), never a route's own page."""

from __future__ import annotations

from collections.abc import Sequence

from engine.records import JobRecord, JobStatus
from storage.protocols import Store

PAGE_SIZE = 500


async def all_jobs(
    store: Store,
    *,
    status: JobStatus | Sequence[JobStatus] | None = None,
    waiting: bool | None = None,
    parent_job_id: str | None = None,
    trigger_id: str | None = None,
    page_size: int = PAGE_SIZE,
) -> list[JobRecord]:
    """The jobs `store.list_jobs` matches with these filters, newest first. A job the store cannot read is
    left out of its page (the store logs it), so pages are stepped by their size, not by the jobs they
    hold."""
    found: list[JobRecord] = []
    offset = 0
    while True:
        page = await store.list_jobs(
            status=status,
            offset=offset,
            limit=page_size,
            waiting=waiting,
            parent_job_id=parent_job_id,
            trigger_id=trigger_id,
        )
        found.extend(page.items)
        offset += page.limit
        if offset >= page.total:
            return found
