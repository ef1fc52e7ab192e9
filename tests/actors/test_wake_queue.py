"""The job manager's durable timers without Ray: each job wakes once, at its latest scheduled time, in
order of time; a discarded job does not wake; a time already past wakes at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from actors.ray_runtime.wake_queue import WakeQueue
from engine.records import utcnow
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(10)


async def test_jobs_wake_in_order_once_and_a_rescheduled_or_discarded_one_as_said():
    woke: list[str] = []
    queue = WakeQueue(woke.append)
    now = utcnow()
    queue.schedule("late", now + timedelta(seconds=0.3))
    queue.schedule("soon", now + timedelta(seconds=0.1))
    queue.schedule("moved", now + timedelta(seconds=0.05))
    queue.schedule("moved", now + timedelta(seconds=0.2))
    queue.schedule("dropped", now + timedelta(seconds=0.15))
    queue.discard("dropped")
    queue.schedule("past", now - timedelta(seconds=5))
    assert queue.next_due() == now - timedelta(seconds=5)
    assert await wait_until(lambda: len(woke) == 4, timeout_s=3)
    await asyncio.sleep(0.2)
    assert woke == ["past", "soon", "moved", "late"]
    assert len(queue) == 0 and queue.next_due() is None
