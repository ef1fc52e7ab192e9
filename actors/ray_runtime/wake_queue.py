"""When each suspended job must run again: the job manager's durable timers.

The times come from the jobs' checkpoints (each open wait's deadline), so the queue is rebuilt from the
store when the manager starts; a timer whose time passed while the service was down fires at once. One
entry per job, its earliest deadline; a later `schedule` for the job replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime

from engine.records import utcnow
from storage.analytics import percentile

logger = logging.getLogger(__name__)

LATENESS_SAMPLES = 10_000


class WakeQueue:
    def __init__(self, wake: Callable[[str], None], clock: Callable[[], datetime] = utcnow) -> None:
        self._wake = wake
        self._clock = clock
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lateness_ms: deque[float] = deque(maxlen=LATENESS_SAMPLES)

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, job_id: str, when: datetime) -> None:
        self._due[job_id] = when
        heapq.heappush(self._heap, (when, job_id))
        self._changed.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wake-queue")

    def discard(self, job_id: str) -> None:
        """The job runs (or ended): its entry is dropped when it comes up."""
        self._due.pop(job_id, None)

    def next_due(self) -> datetime | None:
        return min(self._due.values(), default=None)

    def lateness(self) -> dict[str, float | None]:
        """How late after their time the last timers woke their jobs, in ms (p50, p99)."""
        return {
            "timer_late_p50_ms": percentile(self._lateness_ms, 50),
            "timer_late_p99_ms": percentile(self._lateness_ms, 99),
        }

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)
            if not self._heap:
                await self._changed.wait()
                continue
            when, job_id = self._heap[0]
            delay = (when - self._clock()).total_seconds()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), delay)
                continue
            heapq.heappop(self._heap)
            del self._due[job_id]
            self._lateness_ms.append(-delay * 1000)
            try:
                self._wake(job_id)
            except Exception:
                logger.exception("could not resume job %s at its timer", job_id)
