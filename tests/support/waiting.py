"""Waiting on a signal instead of a clock: poll a condition until it holds or a timeout passes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_EVERY_S = 0.02


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10, poll_every_s: float = POLL_EVERY_S
) -> bool:
    """Whether `condition` (plain or async) came to hold within `timeout_s`. It returns rather than
    raises, so the test's own assert right after it says what was expected."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held or asyncio.get_running_loop().time() >= deadline:
            return bool(held)
        await asyncio.sleep(poll_every_s)
