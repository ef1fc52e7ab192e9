"""LLM provider limits: requests in flight, requests per minute and tokens per minute, per provider
and model.

A node asks a `ProviderLimiter` for a permit before each HTTP attempt and releases it with the tokens
really used. The service hands nodes the cluster-wide limiter (one actor, see
actors/ray_runtime/llm_limiter.py); `InProcessLimiter` enforces the same rules within one process, for
running a node on its own.

Per-minute limits are token buckets that start full: up to the whole minute's allowance at once, then
refilled evenly. A request estimated above a whole minute's tokens is let through when its bucket is
full (it would never fit otherwise) and leaves the bucket in debt.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from nodes.settings import NodeSettings


class LimitKey(NamedTuple):
    provider: str
    model: str


@dataclass(frozen=True)
class ProviderLimits:
    """0 means unlimited."""

    max_concurrency: int = 0
    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> ProviderLimits:
        return cls(
            settings.llm_max_concurrency, settings.llm_requests_per_minute, settings.llm_tokens_per_minute
        )

    @property
    def unlimited(self) -> bool:
        return not (self.max_concurrency or self.requests_per_minute or self.tokens_per_minute)


@dataclass(frozen=True)
class Permit:
    key: LimitKey
    estimated_tokens: int


class ProviderLimiter(Protocol):
    async def acquire(self, provider: str, model: str, estimated_tokens: int) -> Permit:
        """Wait for a slot for one request; first come, first served."""

    def release(self, permit: Permit, used_tokens: int) -> None:
        """Give the slot back with the tokens the request really used; never waits, never fails."""


class _Bucket:
    """A per-minute allowance as a token bucket; capacity 0 is no limit."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = per_minute
        self.level = float(per_minute)
        self.updated = now

    def resize(self, per_minute: int) -> None:
        if per_minute != self.capacity:
            self.level = float(per_minute) if not self.capacity else min(self.level, per_minute)
            self.capacity = per_minute

    def refill(self, now: float) -> None:
        if self.capacity:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60)
        self.updated = now

    def need(self, amount: int) -> float:
        """The level an `amount` needs: itself, or a full bucket for one above capacity."""
        return min(amount, self.capacity)

    def seconds_until(self, amount: int) -> float:
        if not self.capacity:
            return 0.0
        return max(0.0, (self.need(amount) - self.level) * 60 / self.capacity)

    def adjust(self, amount: float) -> None:
        if self.capacity:
            self.level = min(self.capacity, self.level + amount)


class Budget:
    """One provider and model's limits and what is in use; pure bookkeeping, time passed in."""

    def __init__(self, limits: ProviderLimits, now: float) -> None:
        self.limits = limits
        self.in_flight = 0
        self.requests = _Bucket(limits.requests_per_minute, now)
        self.tokens = _Bucket(limits.tokens_per_minute, now)

    def set_limits(self, limits: ProviderLimits) -> None:
        if limits != self.limits:
            self.limits = limits
            self.requests.resize(limits.requests_per_minute)
            self.tokens.resize(limits.tokens_per_minute)

    def grantable(self, estimates: Sequence[int], now: float) -> int:
        """How many requests from the front of `estimates` may start now."""
        self.requests.refill(now)
        self.tokens.refill(now)
        cap = self.limits.max_concurrency
        requests, tokens = self.requests.level, self.tokens.level
        count = 0
        for estimate in estimates:
            if cap and self.in_flight + count >= cap:
                break
            if self.requests.capacity and requests < self.requests.need(1):
                break
            if self.tokens.capacity and tokens < self.tokens.need(estimate):
                break
            requests -= 1
            tokens -= estimate
            count += 1
        return count

    def take(self, estimates: Sequence[int]) -> None:
        self.in_flight += len(estimates)
        self.requests.adjust(-len(estimates))
        self.tokens.adjust(-sum(estimates))

    def give_back(self, slots: int, token_refund: int) -> None:
        """`token_refund`: estimated minus used tokens (negative when a request used more)."""
        self.in_flight = max(0, self.in_flight - slots)
        self.tokens.adjust(token_refund)

    def seconds_until(self, estimate: int) -> float | None:
        """When the per-minute limits let a request of `estimate` tokens start; None while it waits
        for a slot in flight instead (a release, not time, frees that)."""
        if self.limits.max_concurrency and self.in_flight >= self.limits.max_concurrency:
            return None
        return max(self.requests.seconds_until(1), self.tokens.seconds_until(estimate))


@dataclass
class _Waiting:
    estimates: Sequence[int]
    future: asyncio.Future[int]
    owner: str


@dataclass
class _KeyState:
    budget: Budget
    queue: deque[_Waiting] = field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None


class KeyedLimiter:
    """Budgets per key with a first-come-first-served queue of waiting leases, on one event loop.

    A lease asks for several requests at once (their token estimates, in order) and is granted a
    prefix of at least one (0 only when its owner withdraws it): the cluster limiter's batches and a
    single in-process request alike."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[LimitKey, _KeyState] = {}

    def in_flight(self, key: LimitKey) -> int:
        state = self._keys.get(key)
        return state.budget.in_flight if state else 0

    def waiting(self, key: LimitKey, excluding_owner: str | None = None) -> int:
        """Leases waiting for `key`, those of `excluding_owner` left out."""
        state = self._keys.get(key)
        if state is None:
            return 0
        return sum(1 for w in state.queue if not w.future.done() and w.owner != excluding_owner)

    async def lease(
        self, key: LimitKey, limits: ProviderLimits, estimates: Sequence[int], owner: str = ""
    ) -> int:
        if not estimates:
            raise ValueError("a lease needs at least one request")
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(Budget(limits, self._clock()))
        state.budget.set_limits(limits)
        if not state.queue:
            granted = state.budget.grantable(estimates, self._clock())
            if granted:
                state.budget.take(estimates[:granted])
                return granted
        waiting = _Waiting(estimates, asyncio.get_running_loop().create_future(), owner)
        state.queue.append(waiting)
        self._dispatch(key)
        try:
            return await waiting.future
        except asyncio.CancelledError:
            if waiting.future.done() and not waiting.future.cancelled():
                granted = waiting.future.result()
                self.give_back(key, granted, sum(estimates[:granted]))
            raise

    def withdraw(self, key: LimitKey, owner: str) -> None:
        """End the waiting leases of `owner` with nothing granted."""
        state = self._keys.get(key)
        if state is not None:
            for waiting in state.queue:
                if waiting.owner == owner and not waiting.future.done():
                    waiting.future.set_result(0)
            self._dispatch(key)

    def give_back(self, key: LimitKey, slots: int, token_refund: int) -> None:
        state = self._keys.get(key)
        if state is not None:
            state.budget.give_back(slots, token_refund)
            self._dispatch(key)

    def _dispatch(self, key: LimitKey) -> None:
        state = self._keys[key]
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        while state.queue:
            head = state.queue[0]
            if head.future.done():
                state.queue.popleft()
                continue
            granted = state.budget.grantable(head.estimates, self._clock())
            if not granted:
                wait = state.budget.seconds_until(head.estimates[0])
                if wait is not None:
                    state.timer = asyncio.get_running_loop().call_later(max(wait, 0.001), self._dispatch, key)
                return
            state.budget.take(head.estimates[:granted])
            state.queue.popleft()
            head.future.set_result(granted)


class InProcessLimiter:
    """A ProviderLimiter for one process (one event loop): the same rules as the cluster's limiter."""

    def __init__(self, limits: ProviderLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.core = KeyedLimiter(clock)

    async def acquire(self, provider: str, model: str, estimated_tokens: int) -> Permit:
        key = LimitKey(provider, model)
        if not self.limits.unlimited:
            await self.core.lease(key, self.limits, [estimated_tokens])
        return Permit(key, estimated_tokens)

    def release(self, permit: Permit, used_tokens: int) -> None:
        if not self.limits.unlimited:
            self.core.give_back(permit.key, 1, permit.estimated_tokens - used_tokens)
