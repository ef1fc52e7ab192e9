"""The EventBus on Redis Streams: a stream per job (`wf:job:<id>`) and per workflow (`wf:workflow:<id>`).

Publishing appends the event, as JSON, to both streams in one Lua script, which also makes it idempotent:
the script keeps the last sequence number each job's stream took (`wf:job-sequence:<id>`) and drops an
event whose sequence is not after it, so a runner that publishes its outbox again after a crash, or a
command retried after a dropped connection, adds nothing twice; `publish_many` sends the script calls
of several events in one pipelined round trip. The event that ends a job gives its stream and that key a
time to live; the workflow's stream is capped instead. Subscribing replays the stream after an id from
the pooled connection, then follows it live through a shared `_StreamHub`: ONE connection that runs one
blocking XREAD over every stream any subscriber of this bus follows, and fans the entries out to the
subscribers' inboxes. So 200 SSE clients cost one blocked connection, not 200,
and a blocking read never holds a connection that publishers need.

Delivery is ordered per stream and at-least-once (exactly once for sequenced job events, which the
streams hold once each): a subscriber keeps the id of the last event it yielded, drops anything not
after it, and after a Redis outage or an inbox overflow re-reads the stream from that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.errors import StorageUnavailableError
from engine.records import JobEvent

log = logging.getLogger(__name__)

EVENT_FIELD = "event"
DEFAULT_JOB_STREAM_TTL_S = 24 * 3600
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX_ID_PART = 2**64 - 1
_RECONNECT_FIRST_S = 0.05


def _raise_if_cancelled() -> None:
    """redis-py's read timeouts can turn a task's cancellation into a timeout or connection error; a
    loop that retries such errors must not swallow the cancellation, or whoever cancelled waits forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_RECONNECT_MAX_S = 2.0


def job_stream(job_id: str) -> str:
    return f"wf:job:{job_id}"


def job_sequence_key(job_id: str) -> str:
    return f"wf:job-sequence:{job_id}"


def workflow_stream(workflow_id: str) -> str:
    return f"wf:workflow:{workflow_id}"


_PUBLISH_JOB_EVENT = f"""
-- KEYS: the job's stream, its last-sequence key, the workflow's stream
-- ARGV: payload, sequence (0: unsequenced, never dropped), job and workflow stream caps,
--       time to live in seconds (0: none), whether the event ends the job ('1' or '0')
-- The sequence is taken only after both appends: a script stopped by a failing command keeps what it
-- did before, and a sequence taken first would make a publish that failed drop its event when it is
-- published again. This way a failed publish may leave the event once in the job's stream, and
-- publishing it again appends it a second time: at least once, never lost.
local sequence = tonumber(ARGV[2])
if sequence > 0 and sequence <= tonumber(redis.call('GET', KEYS[2]) or '0') then
    return false
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', {EVENT_FIELD!r}, ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', {EVENT_FIELD!r}, ARGV[1])
if sequence > 0 then
    redis.call('SET', KEYS[2], sequence)
end
if ARGV[6] == '1' and tonumber(ARGV[5]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return id
"""


def parse_after(after: str | None) -> str | None:
    """Validate a client-given position: None (everything), '$' (from now), or a stream id
    ('<ms>-<seq>' or '<ms>'). Returns the full id, '$', or None."""
    if after is None or after == "$":
        return after
    match = _STREAM_ID.match(after.strip()) if isinstance(after, str) else None
    if match is None or int(match.group(1)) > _MAX_ID_PART or int(match.group(2) or 0) > _MAX_ID_PART:
        raise ValueError(
            f"invalid event id {after!r}: expected an id given by a previous event "
            "('<milliseconds>-<sequence>'), '0' for everything, or '$' for new events only"
        )
    return f"{int(match.group(1))}-{int(match.group(2) or 0)}"


def _id_order(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _resp2_streams(reply: object) -> list[list[Any]]:
    """XREAD's reply on this bus's connections, which speak RESP2: [[stream, [(id, fields), ...]], ...].
    (redis-py's return type also allows RESP3's dict.)"""
    return cast("list[list[Any]]", reply)


def _decode(stream: str, entry_id: str, fields: dict[str, str]) -> JobEvent | None:
    try:
        event = JobEvent.model_validate_json(fields[EVENT_FIELD])
    except (KeyError, ValidationError) as error:
        log.warning("skipping unreadable entry %s in stream %s: %s", entry_id, stream, error)
        return None
    event.id = entry_id
    return event


def _unavailable(host: str, port: int, error: Exception) -> StorageUnavailableError:
    return StorageUnavailableError(f"Redis at {host}:{port} is unavailable: {error}")


class _Inbox:
    """The live events the hub hands one subscriber. Bounded: a subscriber that falls `limit` events
    behind is dropped from the hub and catches up from the stream itself."""

    def __init__(self, stream: str, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.events: list[JobEvent] = []
        self.active = False
        self.detached = False
        self.failure: Exception | None = None
        self.wakeup = asyncio.Event()

    def offer(self, events: list[JobEvent]) -> bool:
        if len(self.events) + len(events) > self.limit:
            self.detach()
            return False
        self.events.extend(events)
        self.wakeup.set()
        return True

    def detach(self) -> None:
        self.detached = True
        self.active = False
        self.wakeup.set()

    def fail(self, error: Exception) -> None:
        self.failure = error
        self.wakeup.set()

    async def take(self) -> list[JobEvent]:
        """The events received since the last take; an empty list once the hub stopped feeding it."""
        while not self.events and not self.detached and self.failure is None:
            self.wakeup.clear()
            await self.wakeup.wait()
        if self.failure is not None:
            raise self.failure
        events, self.events = self.events, []
        return events


class _StreamHub:
    """One blocking XREAD, on one dedicated connection, for every stream that some inbox follows."""

    def __init__(self, reader: aioredis.Redis, control: aioredis.Redis, block_ms: int, batch: int) -> None:
        self._reader = reader
        self._control = control
        self._block_ms = block_ms
        self._batch = batch
        self._inboxes: dict[str, set[_Inbox]] = {}
        self._cursors: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reader_id: int | None = None
        self._reading: frozenset[str] = frozenset()
        self._read_number = 0
        self._interrupts: set[asyncio.Task[None]] = set()
        self._closed = False

    def add(self, inbox: _Inbox, after: str) -> None:
        """Start feeding `inbox` with the entries of its stream; `after` is where its reader stands."""
        inbox.active, inbox.detached, inbox.events = True, False, []
        followers = self._inboxes.setdefault(inbox.stream, set())
        if not followers:
            self._cursors[inbox.stream] = after
        followers.add(inbox)
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="redis-stream-hub")
        elif inbox.stream not in self._reading and self._reading:
            task = asyncio.create_task(self._interrupt(self._read_number))
            self._interrupts.add(task)
            task.add_done_callback(self._interrupts.discard)

    def remove(self, inbox: _Inbox) -> None:
        inbox.active = False
        followers = self._inboxes.get(inbox.stream)
        if followers is None:
            return
        followers.discard(inbox)
        if not followers:
            del self._inboxes[inbox.stream]
            del self._cursors[inbox.stream]

    async def close(self) -> None:
        self._closed = True
        self._changed.set()
        tasks = [*self._interrupts, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(StorageUnavailableError("the event bus was closed while following a stream"))

    def _fail_all(self, error: Exception) -> None:
        for followers in self._inboxes.values():
            for inbox in followers:
                inbox.active = False
                inbox.fail(error)
        self._inboxes.clear()
        self._cursors.clear()

    def _detach_all(self) -> None:
        """Stop feeding every inbox; each subscriber re-reads its stream from its own position, so a
        stream that cannot be read fails its own subscribers only."""
        for followers in list(self._inboxes.values()):
            for inbox in list(followers):
                inbox.detach()
                self.remove(inbox)

    async def _interrupt(self, read_number: int) -> None:
        """End the running XREAD early (CLIENT UNBLOCK) so the next one includes a newly added stream.
        The XREAD may not have reached the server yet, so this tries again briefly until it has."""
        for _ in range(200):
            if self._read_number != read_number or not self._reading or self._reader_id is None:
                return
            try:
                if await self._control.client_unblock(self._reader_id):
                    return
            except _UNAVAILABLE:
                return
            await asyncio.sleep(0.005)

    async def _run(self) -> None:
        """Read until closed. redis-py may turn a cancellation during a read into a connection error,
        so the loop also stops on the `_closed` flag rather than relying on CancelledError alone."""
        delay = _RECONNECT_FIRST_S
        while not self._closed:
            if not self._inboxes:
                self._changed.clear()
                await self._changed.wait()
                continue
            streams: dict[str, str] = {}
            try:
                if self._reader_id is None:
                    self._reader_id = int(await self._reader.client_id())
                streams = dict(self._cursors)
                self._read_number += 1
                self._reading = frozenset(streams)
                # redis-py types `streams` as an invariant Dict[KeyT, StreamIdT]; it reads any str -> str.
                reply = await self._reader.xread(
                    streams,  # type: ignore[arg-type]
                    count=self._batch,
                    block=self._block_ms,
                )
            except _UNAVAILABLE as error:
                _raise_if_cancelled()
                self._reader_id = None
                log.warning("Redis stream reader lost its connection (%s); retrying in %.2f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            except RedisError as error:
                log.error(
                    "reading streams %s failed (%s); their subscribers re-read them", sorted(streams), error
                )
                self._detach_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            finally:
                self._reading = frozenset()
            delay = _RECONNECT_FIRST_S
            self._deliver(_resp2_streams(reply))

    def _deliver(self, reply: list[Any]) -> None:
        for stream, entries in reply:
            if stream not in self._cursors or not entries:
                continue
            self._cursors[stream] = entries[-1][0]
            events = [e for e in (_decode(stream, i, f) for i, f in entries) if e is not None]
            for inbox in list(self._inboxes.get(stream, ())):
                if not inbox.offer(events):
                    self.remove(inbox)


class RedisStreamBus:
    """EventBus on Redis Streams (redis.asyncio). Create it, `await start()`, `await close()` at the end.

    A job's stream is kept `job_stream_ttl_s` seconds after the event that ends the job (0: for ever)."""

    def __init__(
        self,
        host: str,
        port: int = 6379,
        password: str | None = None,
        *,
        job_stream_maxlen: int = 100_000,
        workflow_stream_maxlen: int = 1_000_000,
        job_stream_ttl_s: int = DEFAULT_JOB_STREAM_TTL_S,
        block_ms: int = 2_000,
        read_batch: int = 500,
        inbox_limit: int = 10_000,
        max_connections: int = 32,
    ) -> None:
        self.host = host
        self.port = port
        self._password = password or None
        self.job_stream_maxlen = job_stream_maxlen
        self.workflow_stream_maxlen = workflow_stream_maxlen
        if job_stream_ttl_s < 0:
            raise ValueError(f"job_stream_ttl_s must be 0 (keep for ever) or more, not {job_stream_ttl_s}")
        self.job_stream_ttl_s = job_stream_ttl_s
        self.block_ms = block_ms
        self.read_batch = read_batch
        self.inbox_limit = inbox_limit
        self.max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._hub: _StreamHub | None = None
        self._script: AsyncScript | None = None

    async def start(self) -> None:
        """Connect and check that the server answers; StorageUnavailableError when it does not."""
        if self._client is None:
            self._client = self._new_client()
            self._script = self._client.register_script(_PUBLISH_JOB_EVENT)
            self._reader = aioredis.Redis(
                host=self.host,
                port=self.port,
                password=self._password,
                decode_responses=True,
                single_connection_client=True,
                socket_connect_timeout=2,
                socket_timeout=self.block_ms / 1000 + 10,
                retry=Retry(NoBackoff(), 0),
                client_name="wf-stream-hub",
            )
            self._hub = _StreamHub(self._reader, self._client, self.block_ms, self.read_batch)
        try:
            await self._client.ping()
        except _UNAVAILABLE as error:
            raise _unavailable(self.host, self.port, error) from error

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
        for client in (self._reader, self._client):
            if client is not None:
                await client.aclose()
        self._client = self._reader = self._hub = None
        self._script = None

    async def ping(self) -> bool:
        try:
            return bool(await self._pool().ping())
        except _UNAVAILABLE:
            return False

    async def publish(self, event: JobEvent) -> str | None:
        """Append to the job's and the workflow's streams at once; the id in the job's stream (in the
        workflow's stream for a workflow-level event), or None when the job's stream already took this
        sequence number. Unsequenced events (sequence 0, such as llm_token) are never dropped, and a
        command retried after a dropped connection may append one of them twice."""
        if event.job_id is None:
            return await self._publish_workflow_level(event)
        try:
            keys, args = self._script_input(event.job_id, event)
            entry_id = await self._publish_script()(keys=keys, args=args)
        except _UNAVAILABLE as error:
            raise _unavailable(self.host, self.port, error) from error
        return None if entry_id is None else str(entry_id)

    async def publish_many(self, events: Sequence[JobEvent]) -> list[str | None]:
        """`publish` each event, in order, in one pipelined round trip: one EVALSHA of the publishing
        script per job event (each atomic on its own, so no MULTI). When the server lacks the script (it
        restarted), the script is loaded and the events it refused, which changed nothing, run again.
        A command error (such as WRONGTYPE) is raised once the whole batch has run, so unlike a loop of
        `publish` calls the events after the failed one were still offered to the streams."""
        if not events:
            return []
        script = self._publish_script()
        try:
            replies = await self._pipelined(script.sha, events)
            refused = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if refused:
                script.sha = await self._pool().script_load(script.script)
                retried = await self._pipelined(script.sha, [events[index] for index in refused])
                for index, reply in zip(refused, retried, strict=True):
                    replies[index] = reply
        except _UNAVAILABLE as error:
            raise _unavailable(self.host, self.port, error) from error
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [None if reply is None else str(reply) for reply in replies]

    async def _pipelined(self, script_sha: str, events: Sequence[JobEvent]) -> list[Any]:
        """One pipeline of the events' commands; a command's error is returned in its place."""
        async with self._pool().pipeline(transaction=False) as pipe:
            for event in events:
                if event.job_id is None:
                    self._add_workflow_event(pipe, event)
                else:
                    keys, args = self._script_input(event.job_id, event)
                    pipe.evalsha(script_sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    def _add_workflow_event(self, client: aioredis.Redis | Pipeline, event: JobEvent) -> Any:
        """XADD a workflow-level event (no job, so no sequence to check): a coroutine on a client, queued
        on a pipeline."""
        return client.xadd(
            workflow_stream(event.workflow_id),
            {EVENT_FIELD: event.model_dump_json(exclude={"id"})},
            maxlen=self.workflow_stream_maxlen,
            approximate=True,
        )

    def _script_input(self, job_id: str, event: JobEvent) -> tuple[list[str], list[Any]]:
        """The publishing script's keys and arguments for an event of job `job_id`."""
        keys = [job_stream(job_id), job_sequence_key(job_id), workflow_stream(event.workflow_id)]
        args = [
            event.model_dump_json(exclude={"id"}),
            event.sequence,
            self.job_stream_maxlen,
            self.workflow_stream_maxlen,
            self.job_stream_ttl_s,
            int(event.ends_job),
        ]
        return keys, args

    def subscribe(self, job_id: str, after: str | None = None) -> AsyncIterator[JobEvent]:
        return self._follow(job_stream(job_id), parse_after(after), stop_at_job_end=True)

    def subscribe_workflow(self, workflow_id: str, after: str | None = None) -> AsyncIterator[JobEvent]:
        return self._follow(workflow_stream(workflow_id), parse_after(after), stop_at_job_end=False)

    async def publish_workflow_event(self, workflow_id: str, event_type: str, data: dict[str, Any]) -> str:
        if not event_type:
            raise ValueError("event_type must be a non-empty name")
        return await self._publish_workflow_level(
            JobEvent(sequence=0, type=event_type, workflow_id=workflow_id, data=data)
        )

    async def _publish_workflow_level(self, event: JobEvent) -> str:
        """Append an event that belongs to no job to its workflow's stream; its id there."""
        try:
            return str(await self._add_workflow_event(self._pool(), event))
        except _UNAVAILABLE as error:
            raise _unavailable(self.host, self.port, error) from error

    def subscribe_workflow_events(self, workflow_id: str) -> AsyncIterator[JobEvent]:
        """Events published after iteration starts (the first `__anext__`), without end."""
        return self.subscribe_workflow(workflow_id, after="$")

    async def _follow(
        self, stream: str, after: str | None, *, stop_at_job_end: bool
    ) -> AsyncIterator[JobEvent]:
        hub = self._started_hub()
        last_id = await self._stream_end(stream) if after == "$" else (after or "0-0")
        inbox = _Inbox(stream, self.inbox_limit)
        replaying, patient = True, False
        try:
            while True:
                if replaying:
                    events = await self._read_after(stream, last_id, patient=patient)
                    patient = True
                    if not events:
                        if inbox.active:
                            replaying = False
                        else:
                            hub.add(inbox, last_id)
                        continue
                else:
                    events = await inbox.take()
                    if not events:
                        replaying = True
                        continue
                for event in events:
                    if _id_order(event.id or "0-0") <= _id_order(last_id):
                        continue
                    last_id = event.id or last_id
                    yield event
                    if stop_at_job_end and event.ends_job:
                        return
        finally:
            hub.remove(inbox)

    async def _read_after(self, stream: str, last_id: str, *, patient: bool) -> list[JobEvent]:
        """One page of the stream after `last_id`. A patient read waits out a Redis outage (a subscription
        that is already following keeps its position); the first read of a subscription fails fast."""
        delay = _RECONNECT_FIRST_S
        while True:
            try:
                reply = await self._pool().xread({stream: last_id}, count=self.read_batch)
                break
            except _UNAVAILABLE as error:
                _raise_if_cancelled()
                if not patient:
                    raise _unavailable(self.host, self.port, error) from error
                log.warning("reading %s failed (%s); retrying in %.2f s", stream, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
        streams = _resp2_streams(reply)
        entries = streams[0][1] if streams else []
        return [e for e in (_decode(stream, i, f) for i, f in entries) if e is not None]

    async def _stream_end(self, stream: str) -> str:
        try:
            newest = await self._pool().xrevrange(stream, "+", "-", count=1)
        except _UNAVAILABLE as error:
            raise _unavailable(self.host, self.port, error) from error
        return str(newest[0][0]) if newest else "0-0"

    def _new_client(self) -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool(
            host=self.host,
            port=self.port,
            password=self._password,
            decode_responses=True,
            max_connections=self.max_connections,
            timeout=10,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return aioredis.Redis.from_pool(pool)

    def _publish_script(self) -> AsyncScript:
        if self._script is None:
            raise RuntimeError("RedisStreamBus used before start()")
        return self._script

    def _pool(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStreamBus used before start()")
        return self._client

    def _started_hub(self) -> _StreamHub:
        if self._hub is None:
            raise RuntimeError("RedisStreamBus used before start()")
        return self._hub
