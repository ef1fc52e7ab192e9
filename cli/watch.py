"""Following a job's events to its end, for `run` in-process and against a service alike: Ctrl-C or
`--timeout` cancel the job, and the command then waits a little for it to end as cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from cli.interrupt import cancel_on_interrupt
from cli.progress import ProgressPrinter
from engine.records import JobEvent

CANCEL_GRACE_S = 30.0

Cancel = Callable[[], Awaitable[None]]


async def follow(
    events: AsyncIterator[JobEvent | None], printer: ProgressPrinter, cancel: Cancel, timeout_s: float | None
) -> None:
    """Show the events until the stream ends after the job's last one. Past `timeout_s` the job is
    cancelled; should it still not end within CANCEL_GRACE_S, stop following (the caller then reports
    the job as stored)."""

    async def show_all() -> None:
        async for event in events:
            if event is not None:
                printer.show(event)

    shown = asyncio.ensure_future(show_all())
    try:
        with cancel_on_interrupt(cancel):
            done, _ = await asyncio.wait({shown}, timeout=timeout_s)
            if not done:
                printer.note(f"the job did not finish within {timeout_s:g} s: cancelling it")
                await cancel()
                done, _ = await asyncio.wait({shown}, timeout=CANCEL_GRACE_S)
            if done:
                shown.result()
            else:
                printer.note(f"the job did not end {CANCEL_GRACE_S:g} s after its cancellation")
    finally:
        shown.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shown
        printer.close()
