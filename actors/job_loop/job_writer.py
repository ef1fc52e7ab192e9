"""Apply a job's decisions to the store and the bus: the one writer of a stored job's state.

A commit is one checkpoint (the job's changes, its changed nodes, its log lines, and its events as the
outbox) and then one publish of those events. So the store is never behind an event a client has seen,
and a writer that dies between the two leaves the events in the outbox: the next writer of the job
publishes them first, in the round trip of its own first commit, and the bus drops those its stream
already has. The job actor writes this way while it runs a job, the job manager when it ends one no
actor runs (a pending job's cancel, a job whose actor died for good).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from engine.ledger import Commit, JobLedger
from engine.records import JobEvent
from engine.scheduler import SchedulerEvent
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)


class JobWriter:
    def __init__(self, ledger: JobLedger, store: Store, bus: EventBus, version: int) -> None:
        self.ledger = ledger
        self.version = version
        self._store = store
        self._bus = bus

    async def commit(
        self,
        events: Iterable[SchedulerEvent],
        *,
        unpublished: Sequence[JobEvent] = (),
        actor_name: str | None = None,
    ) -> Commit | None:
        """Decide, store as one checkpoint, then publish; None when nothing changed.

        `unpublished`: the outbox an earlier writer of the job stored, published before this commit's
        events (also when nothing changed). `actor_name`: the actor that runs the job from now on."""
        decisions = self.ledger.decide(events)
        commit = self.ledger.record(decisions) if decisions else None
        if commit is not None:
            if actor_name is not None:
                commit.changes.actor_name = actor_name
            self.version = await self._store.checkpoint(
                self.ledger.job_id, self.version, commit.changes, commit.nodes, commit.logs
            )
            self.ledger.stored(commit)
        fresh = commit.events if commit is not None else []
        if unpublished or fresh:
            ids = await self._bus.publish_many([*unpublished, *fresh])
            self._report_republished(unpublished, ids[: len(unpublished)])
        return commit

    def _report_republished(self, events: Sequence[JobEvent], ids: Sequence[str | None]) -> None:
        published = [event for event, entry_id in zip(events, ids, strict=True) if entry_id is not None]
        if published:
            logger.warning(
                "job %s: published %d events (sequences %d-%d) its last writer stored but never published",
                self.ledger.job_id,
                len(published),
                published[0].sequence,
                published[-1].sequence,
                extra={"job_id": self.ledger.job_id},
            )
