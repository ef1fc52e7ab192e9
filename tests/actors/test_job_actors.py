"""Reuse mode's runner set, without Ray: which runner a job goes to, and when runners start and end.

The runners here are records started and ended by plain functions that note each call; the set never
looks inside a handle, so no actor is needed to prove its bookkeeping (tests/actors/test_ray_runtime.py
proves the same on real Ray)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from actors.ray_runtime.pooled_actors import PooledActor, SharedActorSet

NO_HANDLE = cast(Any, object())
"""The set never calls a runner's handle."""


class Starts:
    """Starts numbered runners and records which were started and ended."""

    def __init__(self) -> None:
        self.started: list[PooledActor] = []
        self.ended: list[PooledActor] = []

    def start(self) -> PooledActor:
        runner = PooledActor(f"job-runner:{len(self.started)}", handle=NO_HANDLE)
        self.started.append(runner)
        return runner

    def end(self, runner: PooledActor) -> None:
        self.ended.append(runner)

    def runner_set(self, size: int, max_jobs: int = 100) -> SharedActorSet:
        return SharedActorSet(size, max_jobs, self.start, self.end)


def test_many_concurrent_jobs_share_the_configured_runners_evenly():
    starts = Starts()
    runners = starts.runner_set(size=3)
    taken = [runners.assign() for _ in range(50)]
    assert len(starts.started) == 3, "50 jobs at once start no runner beyond the 3 configured"
    assert sorted(runner.running for runner in starts.started) == [16, 17, 17]
    assert {runner.name for runner in taken} == {r.name for r in starts.started}
    assert starts.ended == []


def test_a_job_goes_to_the_ready_runner_with_the_fewest_running_jobs():
    starts = Starts()
    runners = starts.runner_set(size=2)
    runners.fill()
    first, second = starts.started
    runners.mark_ready(first)
    assert [runners.assign() for _ in range(3)] == [first] * 3, "a starting runner waits while one is ready"
    runners.mark_ready(second)
    assert runners.assign() is second
    for _ in range(3):
        runners.release(first)
    assert runners.assign() is first, "the idle runner gets the next job"


def test_a_due_runner_serves_until_its_replacement_is_ready_then_ends_with_its_last_job():
    starts = Starts()
    runners = starts.runner_set(size=1, max_jobs=2)
    runners.fill()
    (first,) = starts.started
    runners.mark_ready(first)
    assert runners.assign() is first and runners.assign() is first
    assert first.due and len(starts.started) == 2, "a replacement started as the runner became due"
    replacement = starts.started[1]
    assert runners.assign() is first, "no job waits for the replacement to start"
    runners.mark_ready(replacement)
    assert first.retiring and runners.assign() is replacement
    runners.release(first)
    runners.release(first)
    assert starts.ended == [], "a retiring runner keeps running its last job"
    runners.release(first)
    assert starts.ended == [first]
    assert runners.actors == [replacement]


def test_a_due_runner_with_no_job_left_ends_as_soon_as_its_replacement_is_ready():
    starts = Starts()
    runners = starts.runner_set(size=1, max_jobs=1)
    runners.fill()
    first = starts.started[0]
    runners.mark_ready(first)
    runners.release(runners.assign())
    runners.mark_ready(starts.started[1])
    assert starts.ended == [first]


def test_adopted_runners_finish_their_jobs_then_end_and_take_no_new_ones():
    starts = Starts()
    runners = starts.runner_set(size=1)
    left = PooledActor("job-runner:old", handle=NO_HANDLE)
    runners.adopt(left, jobs=2)
    assert runners.assign() is not left
    runners.release(left)
    runners.release(left)
    assert starts.ended == [left]


def test_ending_idle_runners_keeps_the_busy_ones():
    starts = Starts()
    runners = starts.runner_set(size=2)
    busy = runners.assign()
    runners.end_idle()
    assert starts.ended == [r for r in starts.started if r is not busy]
    assert runners.actors == [busy]


@pytest.mark.parametrize(("size", "max_jobs"), [(0, 10), (2, 0)])
def test_a_runner_set_needs_a_runner_and_a_job_per_runner(size, max_jobs):
    with pytest.raises(ValueError, match="size >= 1 and max_jobs >= 1"):
        SharedActorSet(size, max_jobs, Starts().start, Starts().end)
