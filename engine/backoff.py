"""How long to wait before trying again: one exponential back-off, its jitter, and Retry-After.

Every retry layer uses these: the scheduler's retry policy (`retry` on a node), the HTTP node's and the
LLM node's own retries, and SQLite's waits for a locked file. The random source is a parameter, so a
caller that must be predictable (a test) passes its own.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

Uniform = Callable[[float, float], float]
"""A random number between its two arguments, like `random.uniform`."""

MAX_DOUBLINGS = 1000
"""2.0 ** 1024 overflows; a delay that has doubled a thousand times is at its ceiling anyway (a SQLite
write on the loop may retry that often while it waits for a lock)."""


def exponential_delay(retry: int, first_s: float, ceiling_s: float) -> float:
    """The wait before retry number `retry` (1 is the first): `first_s`, doubling each time, at most
    `ceiling_s`."""
    return min(ceiling_s, first_s * 2.0 ** min(MAX_DOUBLINGS, max(0, retry - 1)))


def equal_jitter(delay_s: float, uniform: Uniform = random.uniform) -> float:
    """Half the delay for certain and the other half at random, so that many retries failing together
    do not retry together, while none retries much sooner than asked."""
    return uniform(delay_s / 2, delay_s)


def retry_after_s(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait that a response asks for: OpenAI's `retry-after-ms`, else `Retry-After` as
    seconds or an HTTP date. None when neither is there or readable; a time in the past is 0."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _seconds(value: str | None) -> float | None:
    """A finite number, negative taken as 0; None for anything else."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None
