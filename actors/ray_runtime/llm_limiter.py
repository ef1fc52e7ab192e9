"""The cluster-wide LLM provider limiter: one named, detached async actor (`llm-limiter`) holding the
counters, and `ClusterLimiter`, the ProviderLimiter each executor process hands to its nodes.

One actor call per request would cost more than the requests it guards: 1,000 acquire/release pairs
as single async actor calls took 1.6-1.9 s here, more than the whole 1,000-call fan-out may take. So an
executor asks for slots in batches:

- Its `ClusterLimiter` queues its nodes' requests per provider and model and keeps at most one `lease`
  call open for them. The actor grants a prefix of that queue (first come, first served across
  executors; the rest is asked for again behind the others) and the client hands the slots out in
  order. Releases are gathered for GIVE_BACK_DELAY_S and returned in one `give_back` call (the last
  wave of a fan-out ends as a spread of single responses: given back one loop turn at a time, it
  cost a hundred actor calls, a tenth of the executor's CPU).
- While slots may be reused (below), released slots are held for HOLD_S before they go back, and a
  request arriving meanwhile takes one of them without asking the actor. Small jobs' single calls
  arrive one at a time: without holding, each cost a lease and a give-back call, 9-13% of an
  executor's CPU in jobs500's profile.
- With a concurrency cap only (no per-minute limits), a released slot goes straight to the next
  request waiting in the same process, without a round trip, while the actor's last answer said no
  other executor waits (for at most REUSE_WINDOW_S after that answer, so another executor waits at
  most about that long plus one request) and while the slot's lease has LEASE_MARGIN_S left.

A lease the executor never returns (its process died) expires after `lease_s` (a request's timeout
plus LEASE_MARGIN_S) and its slots go back to the pool. If the limiter actor itself restarts, its
counters start from zero: for one request timeout the cap may be exceeded by the requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actors.ray_runtime import ray_api
from engine.errors import RetryableNodeError
from nodes.provider_limits import KeyedLimiter, LimitKey, Permit, ProviderLimits
from nodes.settings import NodeSettings

logger = logging.getLogger(__name__)

LIMITER_NAME = "llm-limiter"
LIMITER_MAX_CONCURRENCY = 10_000
MAX_LEASE_BATCH = 1_000
SWEEP_INTERVAL_S = 1.0
LEASE_MARGIN_S = 30.0
REUSE_WINDOW_S = 1.0
GIVE_BACK_DELAY_S = 0.01
HOLD_S = 0.05


def limiter_handle(namespace: str) -> ray_api.LimiterHandle:
    """The limiter actor of the namespace, started on first use."""
    return ray_api.LimiterHandle(
        ray_api.start_actor(
            LlmLimiterActor,
            name=LIMITER_NAME,
            namespace=namespace,
            max_concurrency=LIMITER_MAX_CONCURRENCY,
            get_if_exists=True,
            on_head=True,
        )
    )


@dataclass
class _Lease:
    expires_at: float
    slots: int


class LlmLimiterActor:
    """Budgets per (provider, model) for the whole cluster. Limits arrive with each lease, so the
    newest settings apply without restarting the actor. Each answer says whether other clients wait
    for the same key (`contended`)."""

    def __init__(self) -> None:
        self._core = KeyedLimiter()
        self._leases: dict[tuple[str, LimitKey], deque[_Lease]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._calls = 0

    async def lease(
        self, client_id: str, key: LimitKey, limits: ProviderLimits, estimates: list[int], lease_s: float
    ) -> tuple[int, bool]:
        """Wait until at least the first request of `estimates` may start; return how many may, and
        whether other clients wait."""
        self._calls += 1
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        granted = await self._core.lease(key, limits, estimates, owner=client_id)
        self._leases.setdefault((client_id, key), deque()).append(_Lease(time.monotonic() + lease_s, granted))
        return granted, self._core.waiting(key, excluding_owner=client_id) > 0

    async def withdraw(self, client_id: str, key: LimitKey) -> None:
        """The client stops waiting: its open lease returns with nothing granted."""
        self._calls += 1
        self._core.withdraw(key, client_id)

    async def give_back(self, client_id: str, key: LimitKey, slots: int, token_refund: int) -> bool:
        """Requests of `client_id` ended; `token_refund` is their estimates minus their use. Returns
        whether other clients wait."""
        self._calls += 1
        self._core.give_back(key, self._settle(client_id, key, slots), token_refund)
        return self._core.waiting(key, excluding_owner=client_id) > 0

    async def stats(self) -> dict[str, Any]:
        """Calls served, the clients (executor processes) seen, and per provider/model what is in use."""
        keys = {key for _, key in self._leases}
        return {
            "calls": self._calls,
            "clients": len({client_id for client_id, _ in self._leases}),
            "keys": {
                f"{key.provider}/{key.model}": {
                    "in_flight": self._core.in_flight(key),
                    "waiting": self._core.waiting(key),
                }
                for key in keys
            },
        }

    def _settle(self, client_id: str, key: LimitKey, slots: int) -> int:
        """Take `slots` off the client's oldest leases; slots of an expired lease were reclaimed already."""
        leases = self._leases.get((client_id, key))
        settled = 0
        while leases and settled < slots:
            taken = min(leases[0].slots, slots - settled)
            leases[0].slots -= taken
            settled += taken
            if not leases[0].slots:
                leases.popleft()
        return settled

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self._reclaim_expired(time.monotonic())

    def _reclaim_expired(self, now: float) -> None:
        for (client_id, key), leases in self._leases.items():
            expired = 0
            while leases and leases[0].expires_at <= now:
                expired += leases.popleft().slots
            if expired:
                logger.warning(
                    "reclaimed %d LLM slots of %s/%s that %s never gave back",
                    expired,
                    key.provider,
                    key.model,
                    client_id,
                )
                self._core.give_back(key, expired, 0)


@dataclass(frozen=True)
class LeasedPermit(Permit):
    """A permit from a lease; its slot may pass to another request of this process until
    `reusable_until` (monotonic time), early enough for that request to end before the lease does."""

    reusable_until: float = 0.0


@dataclass
class _Waiter:
    estimate: int
    future: asyncio.Future[Permit]


@dataclass
class _KeyQueue:
    waiters: deque[_Waiter] = field(default_factory=deque)
    pump: asyncio.Task[None] | None = None
    reuse_until: float = 0.0
    asking: tuple[ray_api.Pending[tuple[int, bool]], list[int]] | None = None
    """The open lease call and the estimates it asked for."""


class ClusterLimiter:
    """The ProviderLimiter of one process, backed by the limiter actor (see the module docstring).
    Use it from one event loop. `hold_s` is the longest a request holds its permit (its timeout); a
    lease lasts `hold_s + lease_margin_s`."""

    def __init__(
        self, namespace: str, limits: ProviderLimits, hold_s: float, lease_margin_s: float = LEASE_MARGIN_S
    ) -> None:
        self.namespace = namespace
        self.limits = limits
        self.lease_margin_s = lease_margin_s
        self.lease_s = hold_s + lease_margin_s
        self.client_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._handle: ray_api.LimiterHandle | None = None
        self._queues: dict[LimitKey, _KeyQueue] = {}
        self._returns: dict[LimitKey, list[int]] = {}
        self._held_until: dict[LimitKey, float] = {}
        """Per key, until when the slots waiting in `_returns` may serve another request here."""
        self._flush: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._reusable = not (limits.requests_per_minute or limits.tokens_per_minute)

    @classmethod
    def for_nodes(cls, namespace: str, settings: NodeSettings) -> ClusterLimiter:
        """The limiter of a process whose nodes call LLMs under these settings (an executor, a job actor):
        their provider limits, and a permit held at most as long as a request may take."""
        return cls(namespace, ProviderLimits.from_settings(settings), hold_s=settings.llm_request_timeout_s)

    async def acquire(self, provider: str, model: str, estimated_tokens: int) -> Permit:
        key = LimitKey(provider, model)
        if self.limits.unlimited:
            return Permit(key, estimated_tokens)
        queue = self._queues.setdefault(key, _KeyQueue())
        held = self._take_held(key, queue, estimated_tokens)
        if held is not None:
            return held
        waiter = _Waiter(estimated_tokens, asyncio.get_running_loop().create_future())
        queue.waiters.append(waiter)
        if queue.pump is None:
            queue.pump = asyncio.get_running_loop().create_task(self._pump(key, queue))
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release(waiter.future.result(), 0)
            raise

    def release(self, permit: Permit, used_tokens: int) -> None:
        if self.limits.unlimited or self._pass_on(permit):
            return
        pending = self._returns.setdefault(permit.key, [0, 0])
        pending[0] += 1
        pending[1] += permit.estimated_tokens - used_tokens
        if isinstance(permit, LeasedPermit):
            held_until = self._held_until.get(permit.key)
            self._held_until[permit.key] = (
                permit.reusable_until if held_until is None else min(held_until, permit.reusable_until)
            )
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._flush_soon())
            self._flushes.add(self._flush)
            self._flush.add_done_callback(self._flushes.discard)

    async def close(self) -> None:
        """Stop asking for slots and give back what was released, and what an open lease call got."""
        queues, self._queues = self._queues, {}
        for queue in queues.values():
            if queue.pump is not None:
                queue.pump.cancel()
            for waiter in queue.waiters:
                waiter.future.cancel()
        for key, queue in queues.items():
            if queue.asking is not None:
                await self._withdraw(key, *queue.asking)
        await asyncio.gather(*self._flushes)
        await self._give_back_now()

    async def _withdraw(
        self, key: LimitKey, lease: ray_api.Pending[tuple[int, bool]], estimates: list[int]
    ) -> None:
        """End an open lease call; slots it was granted before that are given back."""
        try:
            await self._actor().withdraw(self.client_id, key)
            granted, _ = await lease
        except ray_api.ActorDiedError:
            return
        pending = self._returns.setdefault(key, [0, 0])
        pending[0] += granted
        pending[1] += sum(estimates[:granted])

    def _actor(self) -> ray_api.LimiterHandle:
        if self._handle is None:
            self._handle = limiter_handle(self.namespace)
        return self._handle

    def _pass_on(self, permit: Permit) -> bool:
        """Hand a released slot to the next request waiting here, when that is allowed."""
        queue = self._queues.get(permit.key)
        now = time.monotonic()
        if not (
            self._reusable
            and isinstance(permit, LeasedPermit)
            and queue is not None
            and queue.reuse_until > now
            and permit.reusable_until > now
        ):
            return False
        while queue.waiters:
            waiter = queue.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(LeasedPermit(permit.key, waiter.estimate, permit.reusable_until))
                return True
        return False

    def _take_held(self, key: LimitKey, queue: _KeyQueue, estimate: int) -> LeasedPermit | None:
        """A released slot not yet given back, when reuse is allowed and nobody here waits before us."""
        pending = self._returns.get(key)
        held_until = self._held_until.get(key, 0.0)
        now = time.monotonic()
        if not (
            self._reusable
            and pending
            and pending[0] > 0
            and not queue.waiters
            and queue.reuse_until > now
            and held_until > now
        ):
            return None
        pending[0] -= 1
        return LeasedPermit(key, estimate, held_until)

    def _heard(self, key: LimitKey, contended: bool) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.reuse_until = 0.0 if contended else time.monotonic() + REUSE_WINDOW_S

    async def _pump(self, key: LimitKey, queue: _KeyQueue) -> None:
        """Lease slots for the requests waiting here, oldest first, until none wait."""
        try:
            while True:
                queue.waiters = deque(w for w in queue.waiters if not w.future.done())
                if not queue.waiters:
                    return
                batch = [queue.waiters[i] for i in range(min(len(queue.waiters), MAX_LEASE_BATCH))]
                asked_at = time.monotonic()
                estimates = [w.estimate for w in batch]
                try:
                    lease = self._actor().lease(self.client_id, key, self.limits, estimates, self.lease_s)
                    queue.asking = (lease, estimates)
                    granted, contended = await lease
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    queue.asking = None
                    self._fail(batch, exc)
                    continue
                queue.asking = None
                self._heard(key, contended)
                for waiter in batch[:granted]:
                    permit = LeasedPermit(key, waiter.estimate, asked_at + self.lease_margin_s)
                    if waiter.future.done():
                        self.release(permit, 0)
                    else:
                        waiter.future.set_result(permit)
        finally:
            queue.pump = None

    def _fail(self, batch: list[_Waiter], exc: Exception) -> None:
        error = RetryableNodeError(f"the LLM limiter actor could not be reached: {exc}")
        for waiter in batch:
            if not waiter.future.done():
                waiter.future.set_exception(error)

    async def _flush_soon(self) -> None:
        """Give back a little later, so the releases of one burst go together; while no other client
        waits, later still (HOLD_S), so that requests arriving meanwhile reuse the slots."""
        now = time.monotonic()
        uncontended = self._reusable and any(queue.reuse_until > now for queue in self._queues.values())
        await asyncio.sleep(HOLD_S if uncontended else GIVE_BACK_DELAY_S)
        self._flush = None
        await self._give_back_now()

    async def _give_back_now(self) -> None:
        returns, self._returns = self._returns, {}
        self._held_until = {}
        calls = {
            key: self._actor().give_back(self.client_id, key, slots, refund)
            for key, (slots, refund) in returns.items()
            if slots or refund
        }
        for key, given_back in calls.items():
            try:
                self._heard(key, await given_back)
            except Exception as exc:
                logger.warning(
                    "could not give LLM slots back (they return when their lease expires): %s", exc
                )
