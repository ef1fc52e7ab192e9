"""Ctrl-C while a job runs cancels the job (and the command then reports it cancelled); a second
Ctrl-C stops the command at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


@contextlib.contextmanager
def cancel_on_interrupt(cancel: Callable[[], Awaitable[Any]]) -> Iterator[None]:
    """Within the block, SIGINT starts `cancel()` instead of interrupting; only in the main thread,
    the one thread signals reach."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Future[Any]] = set()

    def interrupted() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        task = asyncio.ensure_future(cancel(), loop=loop)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
