"""A node attempt's durable steps as the node sees them (`ctx.steps`): what the attempt finished so far,
and how it records the next thing it finishes (engine/steps.py has the rules of what a step holds).

Where a job runs the node (its own actor), `record` returns once the step is in the job's checkpoint, so a
crash after it loses nothing: the same attempt, run again, finds the step in `get`. Anywhere else (a map's
items, a node test) the journal keeps its steps in memory only, and the node works the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.records import EventType
from engine.steps import storable_step

StepEvent = tuple[EventType, dict[str, Any]]
Recorder = Callable[[str, Any, StepEvent | None, bool], "asyncio.Future[None] | None"]
"""Puts (key, value, event) in the job's inbox for its next commit, in order, and returns the future that
completes once it is stored; with `deferrable` (a recomputable value), none: it may wait to go with the
next entry that cannot."""
Announcer = Callable[[EventType, dict[str, Any]], Awaitable[None]]
"""Publishes one of the node's events (no state change)."""


class StepJournal:
    def __init__(
        self,
        done: Mapping[str, Any] | None = None,
        recorder: Recorder | None = None,
        announcer: Announcer | None = None,
        node_id: str = "",
    ) -> None:
        self._done: dict[str, Any] = dict(done or {})
        self._recorder = recorder
        self._announcer = announcer
        self._node_id = node_id
        self._unstored: list[asyncio.Future[None]] = []

    @property
    def durable(self) -> bool:
        """Whether a recorded step survives a crash of the job's actor."""
        return self._recorder is not None

    def __contains__(self, key: str) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: str, default: Any = None) -> Any:
        """The value recorded as step `key` by this attempt (in an earlier run of it too), else `default`."""
        return self._done.get(key, default)

    async def record(self, key: str, value: Any, event: StepEvent | None = None) -> Any:
        """Record step `key` (JSON data, see engine/steps.py) and publish `event` with it; returns the value
        as stored (JSON data), once it is durable. Recording a key again replaces its value."""
        stored = await self._record(key, value, event, deferrable=False)
        await self.stored()
        return stored

    async def record_soon(self, key: str, value: Any, event: StepEvent | None = None) -> Any:
        """Record step `key` as `record` does, but return at once: it is committed in order, before
        anything the node records or reports after it, and `stored()` waits until it is. For a step
        followed only by work that a crash would redo anyway (an agent's answer before pure tools)."""
        return await self._record(key, value, event, deferrable=False)

    async def record_recomputable(self, key: str, value: Any, event: StepEvent | None = None) -> Any:
        """Record step `key` without waiting for it; its commit may wait to go with the next entry. Only
        for a value the same run computes again, the same, after a crash (a pure node's result): losing
        it costs a recomputation, never a repeated side effect."""
        return await self._record(key, value, event, deferrable=True)

    async def stored(self) -> None:
        """Wait until every step recorded so far with `record` or `record_soon` is durable."""
        unstored, self._unstored = self._unstored, []
        for future in unstored:
            await future

    async def _record(self, key: str, value: Any, event: StepEvent | None, *, deferrable: bool) -> Any:
        stored = storable_step(self._node_id, key, value, len(self._done) - (key in self._done))
        if self._recorder is not None:
            future = self._recorder(key, stored, event, deferrable)
            if future is not None:
                self._unstored.append(future)
        elif self._announcer is not None and event is not None:
            await self._announcer(*event)
        self._done[key] = stored
        return stored

    async def announce(self, event_type: EventType, data: dict[str, Any]) -> None:
        """Publish one of the node's events that records nothing (e.g. a tool call started); nothing where
        no job publishes the node's events."""
        if self._announcer is not None:
            await self._announcer(event_type, data)
