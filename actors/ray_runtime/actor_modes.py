"""The job manager's two ways of giving jobs actors (ACTOR_MODE), chosen once when it is built.

`DedicatedActors`: one actor per job, named after it, taken from a warm pool of prepared ones when one is
there and ended with its job. `SharedActors` (reuse mode): a fixed set of warm shared actors, each running
many jobs at once, never one started per job (`SharedActorSet`).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from actors.ray_runtime.pooled_actors import DEDICATED_PREFIX, SHARED_PREFIX, PooledActor, SharedActorSet
from config.settings import ActorMode, JobSettings

logger = logging.getLogger(__name__)


class ActorStarter(Protocol):
    """What a mode needs from the manager to start and end job actors."""

    def start(self, name: str) -> PooledActor:
        """Start a job actor under `name`."""

    async def prepare(self, actor: PooledActor) -> None:
        """Wait until the actor is up with its store and bus open."""

    def end(self, actor: PooledActor) -> None: ...

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background."""


class JobActorMode(Protocol):
    def ready(self) -> PooledActor | None:
        """An actor to start a job on at once, or None when none is ready."""

    def for_job(self, job_id: str) -> PooledActor:
        """The actor for a job admitted from the queue: a ready one, else one started for it."""

    def give_back(self, actor: PooledActor) -> None:
        """Return an actor taken for a job that was not started after all."""

    def release(self, actor: PooledActor) -> None:
        """One of the actor's jobs ended."""

    def adopt(self, actor: PooledActor, jobs: int) -> None:
        """An actor a previous manager left running `jobs` jobs."""

    def refill(self) -> None:
        """Start what the mode keeps warm, in the background."""

    def warm(self) -> int:
        """How many actors are kept: the warm pool, or the shared actors."""

    def shutdown(self) -> None:
        """End the idle actors (the service is stopping)."""


def new_job_id() -> str:
    return uuid.uuid4().hex


class DedicatedActors:
    def __init__(self, pool_size: int, starter: ActorStarter, on_pool_grew: Callable[[], None]) -> None:
        """`on_pool_grew`: called as each pool actor becomes ready, so queued jobs can take it."""
        self._pool_size = pool_size
        self._starter = starter
        self._on_pool_grew = on_pool_grew
        self._pool: deque[PooledActor] = deque()
        self._filling = False

    def ready(self) -> PooledActor | None:
        return self._pool.popleft() if self._pool else None

    def for_job(self, job_id: str) -> PooledActor:
        return self.ready() or self._starter.start(f"{DEDICATED_PREFIX}{job_id}")

    def give_back(self, actor: PooledActor) -> None:
        self._pool.appendleft(actor)

    def release(self, actor: PooledActor) -> None:
        self._starter.end(actor)

    def adopt(self, actor: PooledActor, jobs: int) -> None:
        """A dedicated actor ends with its job like any other; there is nothing to keep."""

    def refill(self) -> None:
        if not self._filling and len(self._pool) < self._pool_size:
            self._filling = True
            self._starter.spawn(self._fill())

    def warm(self) -> int:
        return len(self._pool)

    def shutdown(self) -> None:
        while self._pool:
            self._starter.end(self._pool.popleft())

    async def _fill(self) -> None:
        """Start pool actors one at a time in the background and wait until each is ready, so
        an execute request that takes one starts its job at once."""
        try:
            while len(self._pool) < self._pool_size:
                actor = self._starter.start(f"{DEDICATED_PREFIX}{new_job_id()}")
                await self._starter.prepare(actor)
                self._pool.append(actor)
                self._on_pool_grew()
        except Exception:
            logger.exception("could not start a pool actor")
        finally:
            self._filling = False


class SharedActors:
    def __init__(self, size: int, max_jobs: int, starter: ActorStarter) -> None:
        self._starter = starter
        self._set = SharedActorSet(size, max_jobs, start=self._start, end=starter.end)

    def ready(self) -> PooledActor:
        return self._set.assign()

    def for_job(self, job_id: str) -> PooledActor:
        return self._set.assign()

    def give_back(self, actor: PooledActor) -> None:
        self._set.release(actor)

    def release(self, actor: PooledActor) -> None:
        self._set.release(actor)

    def adopt(self, actor: PooledActor, jobs: int) -> None:
        self._set.adopt(actor, jobs)

    def refill(self) -> None:
        self._set.fill()

    def warm(self) -> int:
        return len(self._set.actors)

    def shutdown(self) -> None:
        self._set.end_idle()

    def _start(self) -> PooledActor:
        """Start a shared actor; it opens its store and bus at once, before its first job."""
        actor = self._starter.start(f"{SHARED_PREFIX}{uuid.uuid4().hex[:12]}")
        self._starter.spawn(self._prepare(actor))
        return actor

    async def _prepare(self, actor: PooledActor) -> None:
        """Wait until a shared actor is up with its store and bus open, then let it take jobs."""
        try:
            await self._starter.prepare(actor)
        except Exception:
            logger.exception(
                "shared actor %s could not prepare; its jobs open the store themselves",
                actor.name,
            )
        self._set.mark_ready(actor)


def job_actor_mode(
    jobs: JobSettings, max_active_jobs: int, starter: ActorStarter, on_pool_grew: Callable[[], None]
) -> JobActorMode:
    """The mode JOB_ACTOR_MODE names; reuse mode keeps WARM_POOL_SIZE shared actors (at most one per active
    job, at least one)."""
    if jobs.actor_mode is ActorMode.REUSE:
        size = max(1, min(jobs.warm_pool_size, max_active_jobs))
        return SharedActors(size, jobs.reuse_max_jobs, starter)
    return DedicatedActors(jobs.warm_pool_size, starter, on_pool_grew)
