"""The job actors the manager hands jobs to: a pooled actor's record, and reuse mode's shared runners.

Reuse mode keeps a fixed set of warm runner actors and multiplexes jobs onto them: a runner is an
async actor, so it runs many jobs at once as coroutines. Starting an actor costs about 0.4-0.8 s and
84 MB here, so creating one per concurrent job is what capped reuse mode at 10 jobs/s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actors.ray_runtime import ray_api

DEDICATED_PREFIX = "job:"
REUSE_PREFIX = "job-runner:"


@dataclass(eq=False)
class PooledActor:
    name: str
    handle: ray_api.ActorHandle
    running: int = 0
    """Jobs handed to it that have not ended yet (reuse mode)."""
    assigned: int = 0
    """Jobs handed to it over its life (reuse mode)."""
    ready: bool = False
    """Started and prepared (reuse mode): jobs go to ready runners first."""
    due: bool = False
    """Has been handed its share of jobs; serves on until its replacement is ready (reuse mode)."""
    retiring: bool = False
    """Takes no new job and ends with its last one (reuse mode)."""

    @property
    def reserved_job_id(self) -> str | None:
        """In dedicated mode an actor's name carries the id of the job it will run."""
        return self.name.removeprefix(DEDICATED_PREFIX) if self.name.startswith(DEDICATED_PREFIX) else None


class RunnerSet:
    """`size` runners, each running many jobs at once. A job goes to the ready runner with the fewest
    running jobs (to a starting one only while none is ready). A runner that has been handed
    `max_jobs` jobs is due: a replacement starts at once, the due runner keeps taking jobs until the
    replacement is ready (so no job waits for an actor to start), then it retires and ends with its
    last job. So whatever a long-lived process accumulates is bounded."""

    def __init__(
        self,
        size: int,
        max_jobs: int,
        start: Callable[[], PooledActor],
        end: Callable[[PooledActor], None],
    ) -> None:
        if size < 1 or max_jobs < 1:
            raise ValueError(f"a runner set needs size >= 1 and max_jobs >= 1, not {size} and {max_jobs}")
        self.size = size
        self._max_jobs = max_jobs
        self._start = start
        self._end = end
        self._serving: list[PooledActor] = []
        self._retiring: list[PooledActor] = []

    @property
    def runners(self) -> list[PooledActor]:
        """Every live runner: the serving ones (due ones included), then those retiring."""
        return [*self._serving, *self._retiring]

    def fill(self) -> None:
        """Start runners until `size` of them are not due."""
        while sum(not runner.due for runner in self._serving) < self.size:
            self._serving.append(self._start())

    def assign(self) -> PooledActor:
        """The runner for one more job."""
        self.fill()
        ready = [runner for runner in self._serving if runner.ready]
        fresh = [runner for runner in ready if not runner.due]
        runner = min(fresh or ready or self._serving, key=lambda member: member.running)
        runner.running += 1
        runner.assigned += 1
        if runner.assigned >= self._max_jobs and not runner.due:
            runner.due = True
            self.fill()
        return runner

    def mark_ready(self, runner: PooledActor) -> None:
        """A runner finished starting: it takes jobs now, and the due runners it replaces retire."""
        runner.ready = True
        if runner.due or runner not in self._serving:
            return
        for due in [member for member in self._serving if member.due]:
            self._serving.remove(due)
            due.retiring = True
            self._retiring.append(due)
            if due.running == 0:
                self._end_retired(due)

    def release(self, runner: PooledActor) -> None:
        """One of the runner's jobs ended (or was never started)."""
        runner.running = max(0, runner.running - 1)
        if runner.retiring and runner.running == 0:
            self._end_retired(runner)

    def adopt(self, runner: PooledActor, jobs: int) -> None:
        """A runner a previous manager left running `jobs` jobs: it serves those, then ends."""
        runner.running = jobs
        runner.retiring = True
        self._retiring.append(runner)

    def end_idle(self) -> None:
        """End the serving runners that run nothing (the service is stopping)."""
        for runner in [r for r in self._serving if r.running == 0]:
            self._serving.remove(runner)
            self._end(runner)

    def _end_retired(self, runner: PooledActor) -> None:
        self._retiring.remove(runner)
        self._end(runner)
