"""Provider limits: the pure budget, the waiting queue, the cluster limiter actor on real Ray, and the
cap held across two jobs whose llm nodes call a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.llm_limiter import LIMITER_NAME, ClusterLimiter, limiter_handle
from engine.records import EventType, JobEvent, JobStatus
from nodes.provider_limits import Budget, KeyedLimiter, LimitKey, ProviderLimits
from tests.support.openai_server import OpenAITestServer
from tests.support.ray_jobs import execute, finished, wait_for
from tests.support.waiting import wait_until

KEY = LimitKey("api.example", "gpt-4")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------ the budget (pure)


def test_requests_per_minute_allow_a_minutes_burst_then_refill_evenly():
    clock = ManualClock()
    budget = Budget(ProviderLimits(requests_per_minute=60), clock())
    assert budget.grantable([1] * 100, clock()) == 60
    budget.take([1] * 60)
    budget.give_back(60, 0)
    assert budget.grantable([1], clock()) == 0
    assert budget.seconds_until(1) == pytest.approx(1.0)
    clock.now += 2.5
    assert budget.grantable([1] * 10, clock()) == 2


def test_tokens_per_minute_use_estimates_then_settle_on_the_real_use():
    clock = ManualClock()
    budget = Budget(ProviderLimits(tokens_per_minute=1000), clock())
    assert budget.grantable([400, 400, 400], clock()) == 2
    budget.take([400, 400])
    budget.give_back(1, 400 - 100)
    assert budget.grantable([400], clock()) == 1, "the 300 tokens not used came back"
    assert budget.seconds_until(900) == pytest.approx((900 - 500) * 60 / 1000)


def test_a_request_larger_than_a_minute_of_tokens_passes_when_the_bucket_is_full():
    clock = ManualClock()
    budget = Budget(ProviderLimits(tokens_per_minute=100), clock())
    assert budget.grantable([500], clock()) == 1
    budget.take([500])
    assert budget.grantable([10], clock()) == 0
    assert budget.seconds_until(10) == pytest.approx((10 + 400) * 60 / 100), "the debt is paid off first"


def test_concurrency_waits_for_a_release_not_for_time():
    clock = ManualClock()
    budget = Budget(ProviderLimits(max_concurrency=2, requests_per_minute=600), clock())
    assert budget.grantable([1, 1, 1], clock()) == 2
    budget.take([1, 1])
    assert budget.seconds_until(1) is None
    budget.give_back(1, 0)
    assert budget.grantable([1, 1], clock()) == 1


# ------------------------------------------------------------ the waiting queue (one event loop)


async def test_waiting_leases_are_served_first_come_first_served_and_a_cancelled_one_leaks_nothing():
    limiter = KeyedLimiter()
    limits = ProviderLimits(max_concurrency=1)
    assert await limiter.lease(KEY, limits, [1]) == 1
    second = asyncio.ensure_future(limiter.lease(KEY, limits, [1]))
    third = asyncio.ensure_future(limiter.lease(KEY, limits, [1]))
    await wait_until(lambda: limiter.waiting(KEY) == 2)
    assert limiter.waiting(KEY) == 2
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    limiter.give_back(KEY, 1, 0)
    assert await asyncio.wait_for(third, 1) == 1
    assert second.cancelled() and limiter.in_flight(KEY) == 1
    limiter.give_back(KEY, 1, 0)
    assert limiter.in_flight(KEY) == 0


async def test_a_lease_waiting_on_the_request_rate_wakes_up_by_itself():
    limiter = KeyedLimiter()
    limits = ProviderLimits(requests_per_minute=120)
    assert await limiter.lease(KEY, limits, [1] * 200) == 120
    started = time.monotonic()
    assert await asyncio.wait_for(limiter.lease(KEY, limits, [1, 1]), 3) == 1
    assert 0.4 <= time.monotonic() - started < 1.0, "one request every 0.5 s at 120 a minute"


async def test_a_withdrawn_lease_returns_with_nothing_and_others_keep_waiting():
    limiter = KeyedLimiter()
    limits = ProviderLimits(max_concurrency=1)
    await limiter.lease(KEY, limits, [1], owner="a")
    mine = asyncio.ensure_future(limiter.lease(KEY, limits, [1, 1], owner="a"))
    theirs = asyncio.ensure_future(limiter.lease(KEY, limits, [1], owner="b"))
    await wait_until(lambda: limiter.waiting(KEY, excluding_owner="a") == 1)
    assert limiter.waiting(KEY, excluding_owner="a") == 1
    limiter.withdraw(KEY, "a")
    assert await asyncio.wait_for(mine, 1) == 0
    assert not theirs.done()
    limiter.give_back(KEY, 1, 0)
    assert await asyncio.wait_for(theirs, 1) == 1


async def test_a_batch_lease_gets_the_prefix_that_fits():
    limiter = KeyedLimiter()
    assert await limiter.lease(KEY, ProviderLimits(max_concurrency=5), [1] * 8) == 5
    assert limiter.in_flight(KEY) == 5


# ------------------------------------------------------------ the limiter actor on real Ray


@pytest.fixture
def namespace(ray_cluster) -> Iterator[str]:
    name = f"llm-limit-{uuid.uuid4().hex[:8]}"
    yield name
    handle = ray_api.get_actor(LIMITER_NAME, name)
    if handle is not None:
        ray_api.kill(handle)


async def limiter_calls(namespace: str) -> int:
    stats = await limiter_handle(namespace).stats()
    return stats["calls"]


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("limits", "most_calls"),
    [
        (ProviderLimits(max_concurrency=200), 10),
        (ProviderLimits(max_concurrency=200, requests_per_minute=1_000_000), 100),
    ],
    ids=["cap-only-slots-pass-on-locally", "with-rate-limit-every-slot-goes-back"],
)
async def test_a_thousand_acquire_release_pairs_take_few_actor_calls(namespace, limits, most_calls):
    client = ClusterLimiter(namespace, limits, hold_s=30)
    calls_before = await limiter_calls(namespace)

    async def pair() -> None:
        permit = await client.acquire("api.example", "gpt-4", 100)
        await asyncio.sleep(0)
        client.release(permit, 90)

    started = time.perf_counter()
    await asyncio.gather(*(pair() for _ in range(1000)))
    elapsed = time.perf_counter() - started
    await client.close()
    calls = await limiter_calls(namespace) - calls_before
    print(f"\n1,000 acquire/release pairs, {limits}: {elapsed * 1000:.0f} ms, {calls} actor calls")
    assert calls <= most_calls, f"{calls} actor calls for 1,000 requests"
    assert elapsed < 1.0
    stats = await limiter_handle(namespace).stats()
    assert stats["keys"]["api.example/gpt-4"] == {"in_flight": 0, "waiting": 0}


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("limits", "most_calls"),
    [
        (ProviderLimits(max_concurrency=200), 6),
        (ProviderLimits(max_concurrency=200, requests_per_minute=1_000_000), 40),
    ],
    ids=["cap-only-released-slots-are-held-for-the-next", "with-rate-limit-nothing-is-held"],
)
async def test_requests_arriving_one_at_a_time_reuse_held_slots(namespace, limits, most_calls):
    """Small jobs' calls arrive one by one, never waiting together: each would cost a lease and a
    give-back call if a released slot went straight back."""
    client = ClusterLimiter(namespace, limits, hold_s=30)
    calls_before = await limiter_calls(namespace)
    for _ in range(20):
        permit = await client.acquire("api.example", "gpt-4", 100)
        client.release(permit, 90)
        await asyncio.sleep(0.005)
    await client.close()
    calls = await limiter_calls(namespace) - calls_before
    assert calls <= most_calls, f"{calls} actor calls for 20 requests one after another"
    stats = await limiter_handle(namespace).stats()
    assert stats["keys"]["api.example/gpt-4"] == {"in_flight": 0, "waiting": 0}


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_two_clients_never_hold_more_than_the_cap_together(namespace):
    limits = ProviderLimits(max_concurrency=5)
    clients = [ClusterLimiter(namespace, limits, hold_s=30) for _ in range(2)]
    holding = peak = 0
    served = [0, 0]

    async def request(which: int) -> None:
        nonlocal holding, peak
        permit = await clients[which].acquire("api.example", "gpt-4", 10)
        holding += 1
        peak = max(peak, holding)
        await asyncio.sleep(0.05)
        holding -= 1
        served[which] += 1
        clients[which].release(permit, 10)

    await asyncio.gather(*(request(i % 2) for i in range(60)))
    for client in clients:
        await client.close()
    assert peak == 5
    assert served == [30, 30]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_slots_of_a_client_that_never_gives_them_back_return_when_the_lease_expires(namespace):
    limits = ProviderLimits(max_concurrency=2)
    vanished = ClusterLimiter(namespace, limits, hold_s=0.3, lease_margin_s=0.2)
    await vanished.acquire("api.example", "gpt-4", 1)
    await vanished.acquire("api.example", "gpt-4", 1)
    survivor = ClusterLimiter(namespace, limits, hold_s=30)
    started = time.monotonic()
    permit = await asyncio.wait_for(survivor.acquire("api.example", "gpt-4", 1), 10)
    waited = time.monotonic() - started
    assert 0.3 <= waited < 3.0, f"waited {waited:.2f} s for a 0.5 s lease to expire"
    survivor.release(permit, 1)
    await survivor.close()


# ------------------------------------------------------------ the llm node on the service runtime


@pytest.fixture
def llm_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(latency_s=0.2) as server:
        yield server


def llm_nodes(count: int, **config: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    nodes = [{"id": "start", "type": "start"}]
    nodes += [
        {"id": f"ask{i}", "type": "llm", "config": {"model": "gpt-4", "prompt": f"question {i}", **config}}
        for i in range(count)
    ]
    return nodes, [("start", f"ask{i}") for i in range(count)]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_two_jobs_on_two_executors_never_exceed_the_cluster_cap(make_runtime, llm_server):
    runtime = await make_runtime(
        MODEL_SERVICE_URL=llm_server.url, LLM_MAX_CONCURRENCY=3, EXECUTOR_POOL_SIZE=2
    )
    nodes, edges = llm_nodes(6)
    started = time.monotonic()
    jobs = await asyncio.gather(*(execute(runtime, nodes, edges, name=f"llm-cap-{n}") for n in range(2)))
    done = [await wait_for(runtime, job.id, finished) for job in jobs]
    elapsed = time.monotonic() - started

    for job in done:
        assert job.status is JobStatus.COMPLETED, job.error
        for i in range(6):
            checkpoint = job.nodes[f"ask{i}"]
            assert checkpoint.output["text"] == f"echo: question {i}"
            assert checkpoint.usage == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert len(llm_server.requests) == 12
    assert llm_server.peak_open == 3, f"{llm_server.peak_open} requests were in flight at once"
    assert elapsed >= 4 * 0.2, "12 requests of 200 ms, 3 at a time, take at least 4 rounds"
    assert {r.headers["Idempotency-Key"].split(":")[0] for r in llm_server.requests} == {j.id for j in jobs}
    stats = await limiter_handle(runtime.runtime.namespace).stats()
    assert stats["clients"] == 2, "both executor processes took slots from the one limiter"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_streamed_tokens_reach_the_jobs_events(make_runtime, llm_server):
    llm_server.reply_text = "tokens flow to the job events live"
    llm_server.latency_s = 0.0
    llm_server.chunk_delay_s = 0.02
    runtime = await make_runtime(MODEL_SERVICE_URL=llm_server.url)
    nodes, edges = llm_nodes(1, stream=True)
    job = await execute(runtime, nodes, edges, name="llm-stream")
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error

    events: list[JobEvent] = []
    async for event in runtime.bus.subscribe(job.id):
        events.append(event)
    tokens = [e for e in events if e.type == EventType.LLM_TOKEN]
    assert [e.data["index"] for e in tokens] == list(range(7))
    assert (
        "".join(e.data["text"] for e in tokens) == done.nodes["ask0"].output["text"] == llm_server.reply_text
    )
    assert {(e.node_id, e.data["attempt"], e.sequence) for e in tokens} == {("ask0", 1, 0)}
    kinds = [(e.type, e.node_id) for e in events]
    first_token = kinds.index((EventType.LLM_TOKEN, "ask0"))
    last_token = len(kinds) - 1 - kinds[::-1].index((EventType.LLM_TOKEN, "ask0"))
    assert kinds.index((EventType.NODE_STARTED, "ask0")) < first_token
    assert last_token < kinds.index((EventType.NODE_COMPLETED, "ask0")), "tokens come while the node runs"
