"""Apply a job's decisions to the store and the bus: the one writer of a stored job's state.

A commit is one checkpoint (the job's changes, its changed nodes, its log lines, and its events as the
outbox) and then one publish of those events. So the store is never behind an event a client has seen,
and a writer that dies between the two leaves the events in the outbox: the next writer of the job
publishes them first, in the round trip of its own first commit, and the bus drops those its stream
already has. The job actor writes this way while it runs a job, the job manager when it ends one no
actor runs (a pending job's cancel, a job whose actor died for good).

A commit that starts pure nodes (start, end, transform, conditional, switch: `NodeType.pure`) ends them in
the same checkpoint: the writer's `fold` computes their outcomes before anything is stored, and steps those
too, until the commit starts no pure node that has not ended. Their results are functions of what is stored
already, so a crash before the checkpoint loses nothing a client saw (nothing of the commit was published),
and the next run computes them again, the same, under the same sequence numbers; a crash after it finds
them ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from engine.ledger import Commit, JobLedger
from engine.records import JobEvent
from engine.scheduler import Decision, RunNode, SchedulerEvent
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

Fold = Callable[[list[Decision]], Awaitable[dict[RunNode, SchedulerEvent]]]
"""Given decisions a commit just made (it sees every one, in order, before the commit is stored): the
outcome of each run among their actions that is a pure node's, computed now."""


class JobWriter:
    def __init__(
        self, ledger: JobLedger, store: Store, bus: EventBus, version: int, fold: Fold | None = None
    ) -> None:
        self.ledger = ledger
        self.version = version
        self._store = store
        self._bus = bus
        self._fold = fold

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
        decisions, folded = await self._decide(events)
        commit = self.ledger.record(decisions, folded) if decisions else None
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

    async def _decide(self, events: Iterable[SchedulerEvent]) -> tuple[list[Decision], frozenset[RunNode]]:
        """The events' decisions, followed by those of the pure nodes they start, transitively; and the
        runs so folded."""
        decisions: list[Decision] = []
        folded: set[RunNode] = set()
        made = self.ledger.decide(events)
        while made:
            decisions.extend(made)
            outcomes = await self._fold(made) if self._fold is not None else {}
            folded.update(outcomes)
            made = self.ledger.decide(outcomes.values())
        return decisions, frozenset(folded)

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
