"""Following a job's or a workflow's events for a live client, with idle ticks for keep-alives.

A job stream ends after the job's last event. As a safety net, a stream that stays silent for two idle
periods in a row while the store shows the job finished ends too: the store is the source of truth, and
a final event lost to a crash between checkpoint and publish must not hold a client forever (one idle
period of grace lets a final event that is merely late arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from engine.records import JobEvent
from storage.protocols import EventBus, Store

IDLE = None
"""Yielded in place of an event after every idle period without one."""


async def _next_event(events: AsyncIterator[JobEvent]) -> JobEvent:
    return await anext(events)


async def with_idle_ticks(
    events: AsyncIterator[JobEvent], idle_s: float, stop: asyncio.Event | None = None
) -> AsyncGenerator[JobEvent | None, None]:
    """The events, and IDLE after every `idle_s` without one, until `stop` is set. Waiting for the next
    event is never cancelled by a tick, so no event is lost or read twice."""
    pending = asyncio.ensure_future(_next_event(events))
    stopped = asyncio.ensure_future((stop or asyncio.Event()).wait())
    try:
        while True:
            done, _ = await asyncio.wait(
                {pending, stopped}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
            )
            if stopped in done:
                return
            if not done:
                yield IDLE
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            yield event
            pending = asyncio.ensure_future(_next_event(events))
    finally:
        stopped.cancel()
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


def follow_job(
    bus: EventBus,
    store: Store,
    job_id: str,
    after: str | None,
    idle_s: float,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[JobEvent | None, None]:
    """The job's events after `after` (a stream id; None for all), then live, ending after its last
    (or when `stop` is set). Raises ValueError now, not when iterated, for an `after` that is no event id."""
    subscription = bus.subscribe(job_id, after)
    return _until_finished(with_idle_ticks(subscription, idle_s, stop), store, job_id)


async def _until_finished(
    ticks: AsyncGenerator[JobEvent | None, None], store: Store, job_id: str
) -> AsyncGenerator[JobEvent | None, None]:
    finished_at_last_tick = False
    try:
        async for item in ticks:
            if item is IDLE:
                finished = (await store.get_job(job_id)).status.is_terminal
                if finished and finished_at_last_tick:
                    return
                finished_at_last_tick = finished
            else:
                finished_at_last_tick = False
            yield item
    finally:
        await ticks.aclose()


def follow_workflow(
    bus: EventBus, workflow_id: str, after: str | None, idle_s: float
) -> AsyncGenerator[JobEvent | None, None]:
    """Every job's events of the workflow after `after`, then live, without end."""
    return with_idle_ticks(bus.subscribe_workflow(workflow_id, after), idle_s)
