"""Moving a waiting map of child jobs on, in the job's runner: take the signals of children that ended,
start the next items' children (each with its item's idempotency key), and say so as scheduling events.

The runner advances one node at a time, from its stored wait, so an advance never overlaps another of
the same node. Each child start is idempotent by key and each signal is taken only by the checkpoint
that records it, so a crash anywhere in an advance replays safely: the next run starts the same children
(getting the ones started before) and takes the same signals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.child_waits import ChildItem, ChildrenWait
from engine.errors import NodeExecutionError
from engine.failures import error_info
from engine.records import ErrorInfo, JobRecord, NodeCheckpoint, SignalRecord
from engine.scheduler import SchedulerEvent, WaitAdvanced, WaitEnded
from nodes.map_children import (
    child_ended,
    ended_children,
    progress,
    to_start,
    verdict,
    with_ended,
    with_started,
)
from nodes.services import ChildJobs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildrenDue:
    """The job's signals were read: the waiting map of children `node_id` moves on with them."""

    node_id: str
    signals: tuple[SignalRecord, ...]


class ChildMaps:
    def __init__(self, child_jobs: ChildJobs | None, clock: Callable[[], datetime]) -> None:
        self._child_jobs = child_jobs
        self._clock = clock

    async def advance(self, node: NodeCheckpoint, ended: Sequence[SignalRecord]) -> list[SchedulerEvent]:
        """The events that move the node's wait on, given the untaken signals of its running children
        (`ended`): children recorded as ended, the next started, and the node's end once it is decided.
        No events when nothing changed."""
        assert node.wait is not None
        before = ChildrenWait.of(node.wait)
        children = with_ended(before, ended_children(ended))
        started: list[str] = []
        while indexes := to_start(children):
            outcomes = await asyncio.gather(*(self._start(children.items[i], node.node_id) for i in indexes))
            ids = {i: o.id if isinstance(o, JobRecord) else o for i, o in zip(indexes, outcomes, strict=True)}
            children = with_started(children, ids)
            # A child started before a crash may have ended since: its record says how.
            over = [o for o in outcomes if isinstance(o, JobRecord) and o.status.is_terminal]
            children = with_ended(children, {child.id: child_ended(child) for child in over})
            started.extend(outcome.id for outcome in outcomes if isinstance(outcome, JobRecord))
        if children == before:
            return []
        now = self._clock()
        wait = node.wait.model_copy(update={"settings": children.model_dump(mode="json")})
        events: list[SchedulerEvent] = [
            WaitAdvanced(node.node_id, wait, now, tuple(ended), tuple(started), progress(children))
        ]
        try:
            result = verdict(children, node.node_id)
        except NodeExecutionError as exc:
            await self._cancel(children.running())
            events.append(WaitEnded(node.node_id, now, error=error_info(exc)))
            return events
        if result is not None:
            events.append(WaitEnded(node.node_id, now, output=result.output))
        return events

    async def _start(self, item: ChildItem, node_id: str) -> JobRecord | ErrorInfo:
        """The child (the one started before, for a key seen before), or why it could not start (that item
        fails)."""
        starter = self._child_jobs
        try:
            if starter is None:
                raise NodeExecutionError(f"map node '{node_id}': workflow items run only within a job")
            child = await starter.start(item.workflow_id, item.version, item.input, node_id, item.key)
        except Exception as exc:
            return error_info(exc)
        return child

    async def _cancel(self, child_ids: list[str]) -> None:
        """Cancel the children a failed map leaves running (fail_fast)."""
        if self._child_jobs is None or not child_ids:
            return
        outcomes = await asyncio.gather(
            *(self._child_jobs.cancel(child_id) for child_id in child_ids), return_exceptions=True
        )
        for child_id, outcome in zip(child_ids, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                logger.warning("could not cancel child job %s: %s", child_id, outcome)
