"""The job actors the manager hands jobs to: a pooled actor's record, and reuse mode's set of shared actors.

Reuse mode keeps a fixed set of warm shared job actors and multiplexes jobs onto them: each is an async
actor, so it runs many jobs at once as coroutines (each with its own JobRunner). Starting an actor costs
about 0.4-0.8 s and 84 MB here, so creating one per concurrent job is what capped reuse mode at 10 jobs/s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actors.ray_runtime import ray_api

DEDICATED_PREFIX = "job:"
SHARED_PREFIX = "job-runner:"
"""Reuse mode's shared job actors keep the name they have always had in the Ray dashboard."""


@dataclass(eq=False)
class PooledActor:
    name: str
    handle: ray_api.JobActorHandle
    running: int = 0
    """Jobs handed to it that have not ended yet (reuse mode)."""
    assigned: int = 0
    """Jobs handed to it over its life (reuse mode)."""
    ready: bool = False
    """Started and prepared (reuse mode): jobs go to ready actors first."""
    due: bool = False
    """Has been handed its share of jobs; serves on until its replacement is ready (reuse mode)."""
    retiring: bool = False
    """Takes no new job and ends with its last one (reuse mode)."""

    @property
    def reserved_job_id(self) -> str | None:
        """In dedicated mode an actor's name carries the id of the job it will run."""
        return self.name.removeprefix(DEDICATED_PREFIX) if self.name.startswith(DEDICATED_PREFIX) else None


class SharedActorSet:
    """`size` shared actors, each running many jobs at once. A job goes to the ready actor with the fewest
    running jobs (to a starting one only while none is ready). An actor that has been handed `max_jobs`
    jobs is due: a replacement starts at once, the due actor keeps taking jobs until the replacement is
    ready (so no job waits for an actor to start), then it retires and ends with its last job. So
    whatever a long-lived process accumulates is bounded."""

    def __init__(
        self,
        size: int,
        max_jobs: int,
        start: Callable[[], PooledActor],
        end: Callable[[PooledActor], None],
    ) -> None:
        if size < 1 or max_jobs < 1:
            raise ValueError(f"shared actors need size >= 1 and max_jobs >= 1, not {size} and {max_jobs}")
        self.size = size
        self._max_jobs = max_jobs
        self._start = start
        self._end = end
        self._serving: list[PooledActor] = []
        self._retiring: list[PooledActor] = []

    @property
    def actors(self) -> list[PooledActor]:
        """Every live actor: the serving ones (due ones included), then those retiring."""
        return [*self._serving, *self._retiring]

    def fill(self) -> None:
        """Start actors until `size` of them are not due."""
        while sum(not actor.due for actor in self._serving) < self.size:
            self._serving.append(self._start())

    def assign(self) -> PooledActor:
        """The actor for one more job."""
        self.fill()
        ready = [actor for actor in self._serving if actor.ready]
        fresh = [actor for actor in ready if not actor.due]
        actor = min(fresh or ready or self._serving, key=lambda candidate: candidate.running)
        actor.running += 1
        actor.assigned += 1
        if actor.assigned >= self._max_jobs and not actor.due:
            actor.due = True
            self.fill()
        return actor

    def mark_ready(self, actor: PooledActor) -> None:
        """A actor finished starting: it takes jobs now, and the due actors it replaces retire."""
        actor.ready = True
        if actor.due or actor not in self._serving:
            return
        for due in [member for member in self._serving if member.due]:
            self._serving.remove(due)
            due.retiring = True
            self._retiring.append(due)
            if due.running == 0:
                self._end_retired(due)

    def release(self, actor: PooledActor) -> None:
        """One of the actor's jobs ended (or was never started)."""
        actor.running = max(0, actor.running - 1)
        if actor.retiring and actor.running == 0:
            self._end_retired(actor)

    def adopt(self, actor: PooledActor, jobs: int) -> None:
        """A actor a previous manager left running `jobs` jobs: it serves those, then ends."""
        actor.running = jobs
        actor.retiring = True
        self._retiring.append(actor)

    def end_idle(self) -> None:
        """End the serving actors that run nothing (the service is stopping)."""
        for actor in [r for r in self._serving if r.running == 0]:
            self._serving.remove(actor)
            self._end(actor)

    def _end_retired(self, actor: PooledActor) -> None:
        self._retiring.remove(actor)
        self._end(actor)
