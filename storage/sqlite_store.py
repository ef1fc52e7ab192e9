"""The embedded Store: one SQLite file shared by the gateway's and the job actors' processes.

Each store instance owns two connections. Writes and reads of one record (a job, a workflow) run
on the event loop's thread: they are short transactions (a checkpoint takes about 0.1-0.3 ms), while
a hop to a worker thread and back cost 2-5 ms under load here (the loop and the thread wait for each
other's turn at the GIL), which is most of a job event's way to its watchers. A write that finds the
file locked by another process does not wait inside SQLite: it backs off with asyncio.sleep, so the
loop keeps serving, for as long in all as the worker thread's connection would wait (`busy_timeout_ms`
each time, `busy_retries` times, with back-offs between). Listings and analytics, which may read many rows,
run on the other connection in the store's worker thread. Several processes may open the same file:
WAL lets readers run beside the one writer, and writers take the lock up front (BEGIN IMMEDIATE).

With synchronous=NORMAL (the default) a committed checkpoint survives a crash of any process;
only a power loss or OS crash may lose the last commits. Pass synchronous="FULL" to fsync each one.

Payloads are JSON text; times are integer milliseconds since the epoch (UTC), the precision MongoDB
keeps, so both stores hand back the same values. What is too deep to read back is refused, and a row
that cannot be read is skipped in listings (storage/readable.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import TypeAdapter
from pydantic_core import to_json

from engine.backoff import exponential_delay
from engine.errors import ConflictError, NotFoundError, StorageUnavailableError
from engine.models import WorkflowDefinition
from engine.records import (
    ErrorInfo,
    JobAnalytics,
    JobChanges,
    JobEvent,
    JobRecord,
    JobStatus,
    LogEntry,
    NodeCheckpoint,
    Page,
    SecretInfo,
    SignalRecord,
    TriggerRef,
    WebhookChanges,
    WebhookRecord,
    WorkflowAnalytics,
    WorkflowRecord,
    utcnow,
)
from engine.schedules import ScheduleEvent, ScheduleRecord, ScheduleSettings, with_settings, with_slot
from storage.analytics import (
    JobSample,
    NodeSample,
    WorkflowTally,
    check_page,
    fold_job_analytics,
)
from storage.name_search import ascii_lower
from storage.readable import UnreadableRows, check_storable

T = TypeVar("T")

_PENDING_EVENTS = TypeAdapter(list[JobEvent])

MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE workflows (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            definition TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX workflows_by_owner ON workflows (owner, created_at DESC, id DESC)",
        "CREATE INDEX workflows_by_created ON workflows (created_at DESC, id DESC)",
        """CREATE TABLE workflow_versions (
            workflow_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            definition TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (workflow_id, version)
        ) WITHOUT ROWID""",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            workflow_id TEXT NOT NULL,
            workflow_version INTEGER NOT NULL,
            status TEXT NOT NULL,
            input TEXT NOT NULL,
            result TEXT NOT NULL,
            error TEXT,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER,
            version INTEGER NOT NULL,
            actor_name TEXT,
            idempotency_key TEXT,
            event_sequence INTEGER NOT NULL,
            schema_version INTEGER NOT NULL
        )""",
        "CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)",
        "CREATE INDEX jobs_by_owner ON jobs (owner, created_at DESC, id DESC)",
        "CREATE INDEX jobs_by_workflow ON jobs (workflow_id, created_at DESC, id DESC)",
        "CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC)",
        """CREATE TABLE job_nodes (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            node_id TEXT NOT NULL,
            node_type TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at INTEGER,
            finished_at INTEGER,
            usage TEXT,
            checkpoint TEXT NOT NULL,
            PRIMARY KEY (job_id, node_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE logs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            time INTEGER NOT NULL,
            level TEXT NOT NULL,
            node_id TEXT,
            message TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX logs_by_job ON logs (job_id, seq)",
    ),
    ("ALTER TABLE jobs ADD COLUMN pending_events TEXT NOT NULL DEFAULT '[]'",),
    (
        "ALTER TABLE jobs ADD COLUMN owner_roles TEXT NOT NULL DEFAULT '[]'",
        """CREATE TABLE secrets (
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            sealed BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (owner, name)
        ) WITHOUT ROWID""",
    ),
    ("ALTER TABLE jobs ADD COLUMN rerun_of TEXT",),
    (
        "ALTER TABLE jobs ADD COLUMN waiting_on TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX jobs_waiting ON jobs (created_at DESC, id DESC) WHERE waiting_on != '[]'",
        """CREATE TABLE signals (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            sender TEXT NOT NULL,
            idempotency_key TEXT,
            created_at INTEGER NOT NULL
        )""",
        "CREATE INDEX signals_by_job ON signals (job_id, seq)",
        "CREATE UNIQUE INDEX signals_idempotency ON signals (job_id, idempotency_key)",
    ),
    (
        "ALTER TABLE jobs ADD COLUMN parent_job_id TEXT",
        "ALTER TABLE jobs ADD COLUMN parent_node_id TEXT",
        "ALTER TABLE jobs ADD COLUMN workflow_chain TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX jobs_by_parent ON jobs (parent_job_id, created_at DESC, id DESC)",
    ),
    (
        "ALTER TABLE jobs ADD COLUMN called_versions TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE jobs ADD COLUMN trigger_kind TEXT",
        "ALTER TABLE jobs ADD COLUMN trigger_id TEXT",
        "CREATE INDEX jobs_by_trigger ON jobs (trigger_id, created_at DESC, id DESC) "
        "WHERE trigger_id IS NOT NULL",
    ),
    (
        """CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            owner_roles TEXT NOT NULL,
            workflow_id TEXT NOT NULL,
            auth TEXT NOT NULL,
            respond TEXT NOT NULL,
            respond_timeout_s REAL NOT NULL,
            delivery_id_header TEXT,
            rate_limit_per_min INTEGER NOT NULL,
            enabled INTEGER NOT NULL,
            sealed_secret BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        "CREATE INDEX webhooks_by_owner ON webhooks (owner, created_at DESC, id DESC)",
        "CREATE INDEX webhooks_by_workflow ON webhooks (workflow_id, created_at DESC, id DESC)",
    ),
    (
        """CREATE TABLE schedules (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            workflow_id TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            record TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )""",
        "CREATE INDEX schedules_by_owner ON schedules (owner, created_at DESC, id DESC)",
        "CREATE INDEX schedules_by_created ON schedules (created_at DESC, id DESC)",
        "CREATE INDEX schedules_by_workflow ON schedules (workflow_id)",
    ),
    (
        "CREATE INDEX jobs_by_owner_status ON jobs (owner, status, created_at DESC, id DESC)",
        "CREATE INDEX jobs_by_status ON jobs (status, created_at DESC, id DESC)",
        """CREATE TABLE job_counts (
            owner TEXT NOT NULL,
            status TEXT NOT NULL,
            jobs INTEGER NOT NULL,
            PRIMARY KEY (owner, status)
        ) WITHOUT ROWID""",
        "INSERT INTO job_counts (owner, status, jobs) SELECT owner, status, COUNT(*) FROM jobs "
        "GROUP BY owner, status",
        """CREATE TRIGGER jobs_counted_in AFTER INSERT ON jobs BEGIN
            INSERT INTO job_counts (owner, status, jobs) VALUES (new.owner, new.status, 1)
            ON CONFLICT (owner, status) DO UPDATE SET jobs = jobs + 1;
        END""",
        """CREATE TRIGGER jobs_counted_again AFTER UPDATE OF owner, status ON jobs
        WHEN old.owner != new.owner OR old.status != new.status BEGIN
            UPDATE job_counts SET jobs = jobs - 1 WHERE owner = old.owner AND status = old.status;
            INSERT INTO job_counts (owner, status, jobs) VALUES (new.owner, new.status, 1)
            ON CONFLICT (owner, status) DO UPDATE SET jobs = jobs + 1;
        END""",
        """CREATE TRIGGER jobs_counted_out AFTER DELETE ON jobs BEGIN
            UPDATE job_counts SET jobs = jobs - 1 WHERE owner = old.owner AND status = old.status;
        END""",
    ),
]
"""Schema migrations in order; the file's PRAGMA user_version counts those applied. The last keeps
`job_counts`, the jobs of each owner in each status, so a listing filtered by nothing else reads its
total from a few rows instead of counting the owner's every job in an index (8 ms at 100,000 jobs)."""

SCHEMA_VERSION = len(MIGRATIONS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
MAX_IDS_PER_QUERY = 500
"""Ids per `IN (...)` list: SQLite allows 999 parameters in older builds."""
LOCKED_FIRST_WAIT_S = 0.001
LOCKED_LONGEST_WAIT_S = 0.05
"""How a write on the loop backs off while another connection holds the lock: doubling from the first."""
BUSY_FIRST_WAIT_S = 0.01
BUSY_LONGEST_WAIT_S = 0.5
"""How the worker thread backs off between its tries of a transaction that found the file locked."""
_JOB_COLUMNS = (
    "id, owner, workflow_id, workflow_version, status, input, result, error, created_at, started_at, "
    "finished_at, version, actor_name, idempotency_key, event_sequence, pending_events, schema_version, "
    "owner_roles, rerun_of, waiting_on, parent_job_id, parent_node_id, workflow_chain, called_versions, "
    "trigger_kind, trigger_id"
)
_SIGNAL_COLUMNS = "id, job_id, name, payload, sender, idempotency_key, created_at"
_WORKFLOW_COLUMNS = "id, owner, version, name, description, definition, created_at, updated_at"
_VERSION_TABLE_COLUMNS = "workflow_id, owner, version, name, description, definition, created_at, updated_at"
_WEBHOOK_COLUMNS = (
    "id, owner, owner_roles, workflow_id, auth, respond, respond_timeout_s, delivery_id_header, "
    "rate_limit_per_min, enabled, sealed_secret, created_at, updated_at"
)
_VERSION_COLUMNS = "workflow_id AS id, owner, version, name, description, definition, created_at, updated_at"


def _to_ms(value: datetime | None) -> int | None:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MILLISECOND


@overload
def _from_ms(value: int) -> datetime: ...
@overload
def _from_ms(value: int | None) -> datetime | None: ...
def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + value * _MILLISECOND


def _ms_precision(value: datetime | None) -> datetime | None:
    return _from_ms(_to_ms(value))


def _json(value: Any) -> str:
    return to_json(value).decode()


def _error_json(error: ErrorInfo | dict[str, Any] | None) -> str | None:
    if error is None:
        return None
    return error.model_dump_json() if isinstance(error, ErrorInfo) else _json(error)


_CHANGE_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "status": str,
    "result": _json,
    "error": _error_json,
    "started_at": _to_ms,
    "finished_at": _to_ms,
    "actor_name": str,
    "event_sequence": int,
    "pending_events": _json,
    "waiting_on": _json,
}
"""JobChanges field -> encoder of its jobs column (the column has the field's name)."""


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], write: bool) -> T:
    """`work` in one transaction, the write lock taken up front when `write`."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


def _busy_back_off_s(attempt: int) -> float:
    """The worker thread's pause before retrying a transaction that found the file locked."""
    return exponential_delay(attempt + 1, BUSY_FIRST_WAIT_S, BUSY_LONGEST_WAIT_S)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES


def _workflow(row: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(
        id=row["id"],
        owner=row["owner"],
        version=row["version"],
        name=row["name"],
        description=row["description"],
        definition=WorkflowDefinition.model_validate_json(row["definition"]),
        created_at=_from_ms(row["created_at"]),
        updated_at=_from_ms(row["updated_at"]),
    )


def _job(row: sqlite3.Row, node_rows: Sequence[sqlite3.Row]) -> JobRecord:
    nodes = {r["node_id"]: NodeCheckpoint.model_validate_json(r["checkpoint"]) for r in node_rows}
    return JobRecord(
        id=row["id"],
        owner=row["owner"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        status=JobStatus(row["status"]),
        input=json.loads(row["input"]),
        result=json.loads(row["result"]),
        error=None if row["error"] is None else ErrorInfo.model_validate_json(row["error"]),
        created_at=_from_ms(row["created_at"]),
        started_at=_from_ms(row["started_at"]),
        finished_at=_from_ms(row["finished_at"]),
        version=row["version"],
        actor_name=row["actor_name"],
        idempotency_key=row["idempotency_key"],
        event_sequence=row["event_sequence"],
        pending_events=_PENDING_EVENTS.validate_json(row["pending_events"]),
        nodes=nodes,
        schema_version=row["schema_version"],
        owner_roles=json.loads(row["owner_roles"]),
        rerun_of=row["rerun_of"],
        waiting_on=json.loads(row["waiting_on"]),
        parent_job_id=row["parent_job_id"],
        parent_node_id=row["parent_node_id"],
        workflow_chain=json.loads(row["workflow_chain"]),
        called_versions=json.loads(row["called_versions"]),
        trigger=None
        if row["trigger_id"] is None
        else TriggerRef(kind=row["trigger_kind"], id=row["trigger_id"]),
    )


def _signal(row: sqlite3.Row) -> SignalRecord:
    return SignalRecord(
        id=row["id"],
        job_id=row["job_id"],
        name=row["name"],
        payload=json.loads(row["payload"]),
        sender=row["sender"],
        idempotency_key=row["idempotency_key"],
        created_at=_from_ms(row["created_at"]),
    )


def _log_entry(row: sqlite3.Row) -> LogEntry:
    return LogEntry(
        job_id=row["job_id"],
        time=_from_ms(row["time"]),
        level=row["level"],
        node_id=row["node_id"],
        message=row["message"],
        data=json.loads(row["data"]),
    )


def _node_sample(row: sqlite3.Row) -> NodeSample:
    """A node of a job's analytics row (SqliteStore._job_samples)."""
    return NodeSample(
        node_type=row["node_type"],
        status=row["node_status"],
        started_at=_from_ms(row["node_started_at"]),
        finished_at=_from_ms(row["node_finished_at"]),
        usage=None if row["usage"] is None else json.loads(row["usage"]),
    )


def _node_row(job_id: str, node: NodeCheckpoint) -> tuple[Any, ...]:
    node = node.model_copy(
        update={"started_at": _ms_precision(node.started_at), "finished_at": _ms_precision(node.finished_at)}
    )
    return (
        job_id,
        node.node_id,
        node.node_type,
        str(node.status),
        _to_ms(node.started_at),
        _to_ms(node.finished_at),
        None if node.usage is None else _json(node.usage),
        node.model_dump_json(),
    )


_UPSERT_NODE = """
    INSERT INTO job_nodes (job_id, node_id, node_type, status, started_at, finished_at, usage, checkpoint)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, node_id) DO UPDATE SET
        node_type = excluded.node_type, status = excluded.status, started_at = excluded.started_at,
        finished_at = excluded.finished_at, usage = excluded.usage, checkpoint = excluded.checkpoint
"""


_INSERT_LOGS = "INSERT INTO logs (job_id, time, level, node_id, message, data) VALUES (?,?,?,?,?,?)"


def _log_rows(entries: Sequence[LogEntry]) -> list[tuple[Any, ...]]:
    return [(e.job_id, _to_ms(e.time), str(e.level), e.node_id, e.message, _json(e.data)) for e in entries]


def _status_list(status: JobStatus | Sequence[JobStatus] | None) -> list[str] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return [str(JobStatus(status))]
    return [str(JobStatus(s)) for s in status]


def _time_window(
    since: datetime | None, until: datetime | None, table: str = ""
) -> tuple[list[str], list[Any]]:
    """The clauses of a created_at range, on the columns of `table` ("jobs."; none: unqualified)."""
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{table}created_at >= ?")
        params.append(_to_ms(since))
    if until is not None:
        clauses.append(f"{table}created_at < ?")
        params.append(_to_ms(until))
    return clauses, params


def _job_values(job: JobRecord) -> tuple[Any, ...]:
    """A new job's jobs row, in _JOB_COLUMNS order."""
    return (
        job.id,
        job.owner,
        job.workflow_id,
        job.workflow_version,
        str(job.status),
        _json(job.input),
        _json(job.result),
        _error_json(job.error),
        _to_ms(job.created_at),
        _to_ms(job.started_at),
        _to_ms(job.finished_at),
        job.version,
        job.actor_name,
        job.idempotency_key,
        job.event_sequence,
        _json(job.pending_events),
        job.schema_version,
        _json(job.owner_roles),
        job.rerun_of,
        _json(job.waiting_on),
        job.parent_job_id,
        job.parent_node_id,
        _json(job.workflow_chain),
        _json(job.called_versions),
        None if job.trigger is None else job.trigger.kind,
        None if job.trigger is None else job.trigger.id,
    )


_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({','.join('?' * len(_JOB_COLUMNS.split(',')))})"


def _insert_job(
    conn: sqlite3.Connection, job_id: str, values: tuple[Any, ...], node_rows: Sequence[tuple[Any, ...]]
) -> None:
    try:
        conn.execute(_INSERT_JOB, values)
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"job {job_id} already exists") from exc
    conn.executemany(_UPSERT_NODE, node_rows)


def _counted_jobs(conn: sqlite3.Connection, owner: str | None, statuses: list[str] | None) -> int:
    """The jobs of `owner` (None: everyone's) in `statuses` (None: any), from the maintained job_counts."""
    clauses, params = [], []
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if statuses is not None:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    query = f"SELECT COALESCE(SUM(jobs), 0) FROM job_counts {_where(clauses)}"
    return int(conn.execute(query, params).fetchone()[0])


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


class SqliteStore:
    """Store on a SQLite file; see the module docstring for the concurrency and durability rules."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        busy_retries: int = 8,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._busy_retries = busy_retries
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop_conn: sqlite3.Connection | None = None
        self._unreadable = UnreadableRows()

    # plumbing

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{self.path.name}")
        try:
            await self._call(self._open)
            self._loop_conn = self._connect(busy_timeout_ms=0)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        await self._call(self._close_connection)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError(f"SqliteStore({self.path}) used before start() or after close()")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn = self._connect(busy_timeout_ms=self._busy_timeout_ms)
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        self._transaction(self._migrate)

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {current} is newer than this code's {SCHEMA_VERSION}; "
                "upgrade the service"
            )
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _retry_busy(self, work: Callable[[], T]) -> T:
        """Run `work`, again after a short back-off while another connection holds the lock."""
        attempt = 0
        while True:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.rollback()
                if attempt >= self._busy_retries:
                    raise StorageUnavailableError(
                        f"SQLite file {self.path} stayed locked by another connection: {exc}"
                    ) from exc
                time.sleep(_busy_back_off_s(attempt))
                attempt += 1

    def _transaction(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run `work` in one transaction on the worker thread's connection."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"SqliteStore({self.path}) is not open")
        return self._retry_busy(lambda: _in_transaction(conn, work, write))

    async def _on_loop(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run `work` in one transaction on the loop's connection, backing off while the file is locked."""
        conn = self._loop_conn
        if conn is None:
            raise RuntimeError(f"SqliteStore({self.path}) used before start() or after close()")
        waited, retry = 0.0, 0
        while True:
            try:
                return _in_transaction(conn, work, write)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if waited >= self._patience_s():
                    raise StorageUnavailableError(
                        f"SQLite file {self.path} stayed locked by another connection: {exc}"
                    ) from exc
            retry += 1
            delay = exponential_delay(retry, LOCKED_FIRST_WAIT_S, LOCKED_LONGEST_WAIT_S)
            await asyncio.sleep(delay)
            waited += delay

    def _patience_s(self) -> float:
        """How long `_retry_busy` on the worker thread waits for a lock before giving up."""
        back_offs = sum(_busy_back_off_s(attempt) for attempt in range(self._busy_retries))
        return self._busy_timeout_ms / 1000 * (self._busy_retries + 1) + back_offs

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._on_loop(work, write=True)

    async def _read_one(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A read of one record: short enough for the loop's thread."""
        return await self._on_loop(work, write=False)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(lambda: self._transaction(work, write=False))

    async def ping(self) -> bool:
        try:
            return await self._read(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1)
        except (sqlite3.Error, RuntimeError, StorageUnavailableError):
            return False

    def unreadable_rows(self) -> int:
        return self._unreadable.count

    # workflows

    async def create_workflow(
        self, owner: str, definition: WorkflowDefinition, workflow_id: str | None = None
    ) -> WorkflowRecord:
        check_storable(definition, "the workflow definition")
        now = _to_ms(utcnow())
        workflow_id = workflow_id or uuid.uuid4().hex
        values = (
            workflow_id,
            owner,
            1,
            definition.name,
            definition.description,
            definition.model_dump_json(),
            now,
            now,
        )

        def work(conn: sqlite3.Connection) -> WorkflowRecord:
            try:
                conn.execute(f"INSERT INTO workflows ({_WORKFLOW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", values)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"workflow {workflow_id} already exists") from exc
            self._record_version(conn, workflow_id)
            return self._latest_workflow(conn, workflow_id)

        return await self._write(work)

    @staticmethod
    def _record_version(conn: sqlite3.Connection, workflow_id: str) -> None:
        conn.execute(
            f"INSERT INTO workflow_versions ({_VERSION_TABLE_COLUMNS}) "
            f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE id = ?",
            (workflow_id,),
        )

    def _latest_workflow(self, conn: sqlite3.Connection, workflow_id: str) -> WorkflowRecord:
        row = conn.execute(
            f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE id = ? AND deleted = 0", (workflow_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"workflow {workflow_id} not found")
        return self._unreadable.parse_one("workflow", workflow_id, _workflow, row)

    async def get_workflow(self, workflow_id: str, version: int | None = None) -> WorkflowRecord:
        def work(conn: sqlite3.Connection) -> WorkflowRecord:
            if version is None:
                return self._latest_workflow(conn, workflow_id)
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM workflow_versions WHERE workflow_id = ? AND version = ?",
                (workflow_id, version),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"workflow {workflow_id} version {version} not found")
            return self._unreadable.parse_one("workflow", f"{workflow_id} version {version}", _workflow, row)

        return await self._read_one(work)

    async def list_workflows(
        self, owner: str | None, offset: int = 0, limit: int = 50, name_contains: str | None = None
    ) -> Page[WorkflowRecord]:
        check_page(offset, limit)
        clauses, params = ["deleted = 0"], []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if name_contains:
            clauses.append("instr(lower(name), ?) > 0")  # SQLite's lower() folds ASCII letters only
            params.append(ascii_lower(name_contains))
        where = _where(clauses)

        def work(conn: sqlite3.Connection) -> Page[WorkflowRecord]:
            return self._newest_first(
                conn, "workflows", _WORKFLOW_COLUMNS, where, params, offset, limit, "workflow", _workflow
            )

        return await self._read(work)

    def _newest_first(
        self,
        conn: sqlite3.Connection,
        table: str,
        columns: str,
        where: str,
        params: Sequence[Any],
        offset: int,
        limit: int,
        kind: str,
        parse: Callable[[sqlite3.Row], T],
    ) -> Page[T]:
        """One page of a table's rows matching `where`, newest first, with the total; rows the store cannot
        read are left out (and logged)."""
        total = conn.execute(f"SELECT COUNT(*) FROM {table} {where}", params).fetchone()[0]
        rows = conn.execute(
            f"SELECT {columns} FROM {table} {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        items = self._unreadable.parse_each(kind, rows, lambda r: r["id"], parse)
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def list_workflow_versions(
        self, workflow_id: str, offset: int = 0, limit: int = 50
    ) -> Page[WorkflowRecord]:
        check_page(offset, limit)

        def work(conn: sqlite3.Connection) -> Page[WorkflowRecord]:
            total = conn.execute(
                "SELECT COUNT(*) FROM workflow_versions WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()[0]
            if total == 0:
                raise NotFoundError(f"workflow {workflow_id} not found")
            rows = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM workflow_versions WHERE workflow_id = ? "
                "ORDER BY version DESC LIMIT ? OFFSET ?",
                (workflow_id, limit, offset),
            ).fetchall()
            items = self._unreadable.parse_each(
                "workflow version", rows, lambda r: f"{r['id']}/{r['version']}", _workflow
            )
            return Page(items=items, total=total, offset=offset, limit=limit)

        return await self._read(work)

    async def update_workflow(self, workflow_id: str, definition: WorkflowDefinition) -> WorkflowRecord:
        check_storable(definition, "the workflow definition")
        values = (definition.name, definition.description, definition.model_dump_json(), _to_ms(utcnow()))

        def work(conn: sqlite3.Connection) -> WorkflowRecord:
            updated = conn.execute(
                "UPDATE workflows SET version = version + 1, name = ?, description = ?, definition = ?, "
                "updated_at = ? WHERE id = ? AND deleted = 0",
                (*values, workflow_id),
            )
            if updated.rowcount == 0:
                raise NotFoundError(f"workflow {workflow_id} not found")
            self._record_version(conn, workflow_id)
            return self._latest_workflow(conn, workflow_id)

        return await self._write(work)

    async def delete_workflow(self, workflow_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            deleted = conn.execute(
                "UPDATE workflows SET deleted = 1 WHERE id = ? AND deleted = 0", (workflow_id,)
            )
            if deleted.rowcount == 0:
                raise NotFoundError(f"workflow {workflow_id} not found")

        await self._write(work)

    # jobs

    @staticmethod
    def _with_nodes(
        conn: sqlite3.Connection, rows: list[sqlite3.Row]
    ) -> list[tuple[sqlite3.Row, list[sqlite3.Row]]]:
        """Each job row with its node checkpoint rows."""
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        nodes: dict[str, list[sqlite3.Row]] = {job_id: [] for job_id in ids}
        marks = ",".join("?" * len(ids))
        for node_row in conn.execute(
            f"SELECT job_id, node_id, checkpoint FROM job_nodes WHERE job_id IN ({marks})", ids
        ):
            nodes[node_row["job_id"]].append(node_row)
        return [(row, nodes[row["id"]]) for row in rows]

    def _load_jobs(self, conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[JobRecord]:
        """The jobs of these rows that can be read."""
        return self._unreadable.parse_each(
            "job", self._with_nodes(conn, rows), lambda pair: pair[0]["id"], lambda pair: _job(*pair)
        )

    def _job_by_id(self, conn: sqlite3.Connection, job_id: str) -> JobRecord:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} not found")
        ((row, node_rows),) = self._with_nodes(conn, [row])
        return self._unreadable.parse_one("job", job_id, lambda r: _job(r, node_rows), row)

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return []

        def work(conn: sqlite3.Connection) -> list[JobRecord]:
            found: list[JobRecord] = []
            for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
                chunk = wanted[start : start + MAX_IDS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({marks})"
                rows = conn.execute(query, chunk).fetchall()
                found.extend(self._load_jobs(conn, rows))
            return found

        return await self._read(work)

    async def create_job(self, job: JobRecord) -> JobRecord:
        check_storable(job, f"job {job.id}")
        values = _job_values(job)
        node_rows = [_node_row(job.id, node) for node in job.nodes.values()]

        def work(conn: sqlite3.Connection) -> JobRecord:
            if job.idempotency_key is not None:
                existing = conn.execute(
                    "SELECT id FROM jobs WHERE owner = ? AND idempotency_key = ?",
                    (job.owner, job.idempotency_key),
                ).fetchone()
                if existing is not None:
                    return self._job_by_id(conn, existing["id"])
            _insert_job(conn, job.id, values, node_rows)
            return self._job_by_id(conn, job.id)

        return await self._write(work)

    async def load_jobs(self, jobs: Sequence[JobRecord]) -> None:
        """A bulk load, not part of the Store protocol: store new jobs as `create_job` would, in one
        transaction on the worker thread, without reading them back; a job whose id or idempotency key is
        taken fails the whole load. Bench workload `scale` fills its store of 100,000 jobs with it."""
        check_storable(jobs, "the jobs")
        rows = [
            (job.id, _job_values(job), [_node_row(job.id, n) for n in job.nodes.values()]) for job in jobs
        ]

        def work(conn: sqlite3.Connection) -> None:
            for job_id, values, node_rows in rows:
                _insert_job(conn, job_id, values, node_rows)

        await self._call(lambda: self._transaction(work))

    async def get_job(self, job_id: str) -> JobRecord:
        return await self._read_one(lambda conn: self._job_by_id(conn, job_id))

    async def list_jobs(
        self,
        owner: str | None = None,
        workflow_id: str | None = None,
        status: JobStatus | Sequence[JobStatus] | None = None,
        offset: int = 0,
        limit: int = 50,
        waiting: bool | None = None,
        parent_job_id: str | None = None,
        trigger_id: str | None = None,
    ) -> Page[JobRecord]:
        check_page(offset, limit)
        clauses: list[str] = []
        params: list[Any] = []
        if parent_job_id is not None:
            clauses.append("parent_job_id = ?")
            params.append(parent_job_id)
        if trigger_id is not None:
            clauses.append("trigger_id = ?")
            params.append(trigger_id)
        if waiting is not None:
            clauses.append("waiting_on != '[]'" if waiting else "waiting_on = '[]'")
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if workflow_id is not None:
            clauses.append("workflow_id = ?")
            params.append(workflow_id)
        statuses = _status_list(status)
        if statuses is not None:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        where = _where(clauses)
        counted = all(value is None for value in (parent_job_id, trigger_id, workflow_id, waiting))

        def work(conn: sqlite3.Connection) -> Page[JobRecord]:
            total = (
                _counted_jobs(conn, owner, statuses)
                if counted
                else conn.execute(f"SELECT COUNT(*) FROM jobs {where}", params).fetchone()[0]
            )
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return Page(items=self._load_jobs(conn, rows), total=total, offset=offset, limit=limit)

        return await self._read(work)

    async def checkpoint(
        self,
        job_id: str,
        expected_version: int,
        changes: JobChanges,
        nodes: Sequence[NodeCheckpoint] = (),
        logs: Sequence[LogEntry] = (),
    ) -> int:
        """One transaction: the job's changes, its nodes and its log entries land together or not at all."""
        strays = sorted({entry.job_id for entry in logs} - {job_id})
        if strays:
            raise ValueError(
                f"a checkpoint of job {job_id} cannot store log entries of job {', '.join(strays)}"
            )
        check_storable((changes, nodes, logs), f"the checkpoint of job {job_id}")
        updates = changes.as_updates()
        assignments = "".join(f"{column} = ?, " for column in updates)
        update_sql = f"UPDATE jobs SET {assignments}version = version + 1 WHERE id = ? AND version = ?"
        params = [_CHANGE_ENCODERS[column](value) for column, value in updates.items()]
        params += [job_id, expected_version]
        node_rows = [_node_row(job_id, node) for node in nodes]
        log_rows = _log_rows(logs)

        def work(conn: sqlite3.Connection) -> int:
            if conn.execute(update_sql, params).rowcount == 0:
                row = conn.execute("SELECT version FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise NotFoundError(f"job {job_id} not found")
                raise ConflictError(
                    f"job {job_id} checkpoint expected version {expected_version}, "
                    f"but the stored version is {row['version']}"
                )
            if node_rows:
                conn.executemany(_UPSERT_NODE, node_rows)
            if log_rows:
                conn.executemany(_INSERT_LOGS, log_rows)
            return expected_version + 1

        return await self._write(work)

    # logs

    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        check_storable(entries, "the log entries")
        rows = _log_rows(entries)
        job_ids = sorted({e.job_id for e in entries})

        def work(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(job_ids))
            known = {r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", job_ids)}
            missing = [job_id for job_id in job_ids if job_id not in known]
            if missing:
                raise NotFoundError(f"cannot append logs: job {', '.join(missing)} not found")
            conn.executemany(_INSERT_LOGS, rows)

        await self._write(work)

    async def list_logs(
        self, job_id: str, offset: int = 0, limit: int = 100, node_id: str | None = None
    ) -> Page[LogEntry]:
        check_page(offset, limit)
        where, params = "job_id = ?", [job_id]
        if node_id is not None:
            where, params = "job_id = ? AND node_id = ?", [job_id, node_id]

        def work(conn: sqlite3.Connection) -> Page[LogEntry]:
            total = conn.execute(f"SELECT COUNT(*) FROM logs WHERE {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT seq, job_id, time, level, node_id, message, data FROM logs WHERE {where} "
                "ORDER BY seq LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            items = self._unreadable.parse_each(
                "log entry", rows, lambda r: f"{r['job_id']}/{r['seq']}", _log_entry
            )
            return Page(items=items, total=total, offset=offset, limit=limit)

        return await self._read(work)

    # analytics

    def _job_samples(
        self, conn: sqlite3.Connection, owner: str | None, since: datetime | None, until: datetime | None
    ) -> Iterator[JobSample]:
        """The jobs created in the range, each with its nodes (but those a re-run kept: they count in the job
        that ran them), one at a time as one query reads them, newest first."""
        clauses, params = _time_window(since, until, "jobs.")
        if owner is not None:
            clauses.append("jobs.owner = ?")
            params.append(owner)
        rows = conn.execute(
            "SELECT jobs.id, jobs.workflow_id, jobs.status, jobs.started_at, jobs.finished_at, "
            "job_nodes.node_id, job_nodes.node_type, job_nodes.status AS node_status, "
            "job_nodes.started_at AS node_started_at, job_nodes.finished_at AS node_finished_at, "
            "job_nodes.usage FROM jobs LEFT JOIN job_nodes ON job_nodes.job_id = jobs.id "
            "AND json_extract(job_nodes.checkpoint, '$.kept_from') IS NULL "
            f"{_where(clauses)} ORDER BY jobs.created_at DESC, jobs.id DESC",
            params,
        )
        for _, grouped in itertools.groupby(rows, key=operator.itemgetter("id")):
            job_rows = list(grouped)
            nodes = self._unreadable.parse_each(
                "job node",
                [row for row in job_rows if row["node_id"] is not None],
                lambda r: f"{r['id']}/{r['node_id']}",
                _node_sample,
            )
            job = job_rows[0]
            yield JobSample(
                workflow_id=job["workflow_id"],
                status=job["status"],
                started_at=_from_ms(job["started_at"]),
                finished_at=_from_ms(job["finished_at"]),
                nodes=nodes,
            )

    async def job_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> JobAnalytics:
        return await self._read(
            lambda conn: fold_job_analytics(self._job_samples(conn, owner, since, until), since, until)
        )

    async def workflow_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> WorkflowAnalytics:
        def work(conn: sqlite3.Connection) -> WorkflowAnalytics:
            tally = WorkflowTally().add_all(self._job_samples(conn, owner, since, until))
            ids = tally.workflow_ids
            marks = ",".join("?" * len(ids))
            names = {
                r["id"]: r["name"]
                for r in conn.execute(f"SELECT id, name FROM workflows WHERE id IN ({marks})", ids)
            }
            return tally.analytics(names, since, until)

        return await self._read(work)

    # signals

    async def put_signal(self, signal: SignalRecord) -> tuple[SignalRecord, bool]:
        check_storable(signal, f"signal {signal.name} of job {signal.job_id}")
        values = (
            signal.id,
            signal.job_id,
            signal.name,
            _json(signal.payload),
            signal.sender,
            signal.idempotency_key,
            _to_ms(signal.created_at),
        )

        def work(conn: sqlite3.Connection) -> tuple[SignalRecord, bool]:
            if signal.idempotency_key is not None:
                row = conn.execute(
                    f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE job_id = ? AND idempotency_key = ?",
                    (signal.job_id, signal.idempotency_key),
                ).fetchone()
                if row is not None:
                    return _signal(row), False
            conn.execute(f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES (?,?,?,?,?,?,?)", values)
            row = conn.execute(f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE id = ?", (signal.id,)).fetchone()
            return _signal(row), True

        return await self._write(work)

    async def list_signals(self, job_id: str) -> list[SignalRecord]:
        def work(conn: sqlite3.Connection) -> list[SignalRecord]:
            rows = conn.execute(
                f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE job_id = ? ORDER BY seq", (job_id,)
            )
            return [_signal(row) for row in rows]

        return await self._read_one(work)

    # secrets

    async def put_secret(self, owner: str, name: str, sealed: bytes) -> tuple[SecretInfo, bool]:
        now = _to_ms(utcnow())

        def work(conn: sqlite3.Connection) -> tuple[SecretInfo, bool]:
            existed = conn.execute(
                "SELECT 1 FROM secrets WHERE owner = ? AND name = ?", (owner, name)
            ).fetchone()
            conn.execute(
                "INSERT INTO secrets (owner, name, sealed, created_at, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (owner, name) DO UPDATE SET sealed = excluded.sealed, "
                "updated_at = excluded.updated_at",
                (owner, name, sealed, now, now),
            )
            return _secret_info(self._secret_row(conn, owner, name)), existed is None

        return await self._write(work)

    @staticmethod
    def _secret_row(conn: sqlite3.Connection, owner: str, name: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT name, created_at, updated_at FROM secrets WHERE owner = ? AND name = ?", (owner, name)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no secret named {name!r}")
        return row

    async def list_secrets(self, owner: str) -> list[SecretInfo]:
        def work(conn: sqlite3.Connection) -> list[SecretInfo]:
            rows = conn.execute(
                "SELECT name, created_at, updated_at FROM secrets WHERE owner = ? ORDER BY name", (owner,)
            )
            return [_secret_info(row) for row in rows]

        return await self._read_one(work)

    async def sealed_secrets(self, owner: str) -> dict[str, bytes]:
        def work(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute("SELECT name, sealed FROM secrets WHERE owner = ?", (owner,))
            return {row["name"]: bytes(row["sealed"]) for row in rows}

        return await self._read_one(work)

    async def delete_secret(self, owner: str, name: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            deleted = conn.execute("DELETE FROM secrets WHERE owner = ? AND name = ?", (owner, name))
            if deleted.rowcount == 0:
                raise NotFoundError(f"no secret named {name!r}")

        await self._write(work)

    # webhooks (issue 17)

    async def create_webhook(self, hook: WebhookRecord) -> WebhookRecord:
        values = (
            hook.id,
            hook.owner,
            _json(hook.owner_roles),
            hook.workflow_id,
            hook.auth,
            hook.respond,
            hook.respond_timeout_s,
            hook.delivery_id_header,
            hook.rate_limit_per_min,
            int(hook.enabled),
            hook.sealed_secret,
            _to_ms(hook.created_at),
            _to_ms(hook.updated_at),
        )
        marks = ",".join("?" * len(values))

        def work(conn: sqlite3.Connection) -> WebhookRecord:
            conn.execute(f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES ({marks})", values)
            return self._webhook_by_id(conn, hook.id)

        return await self._write(work)

    def _webhook_by_id(self, conn: sqlite3.Connection, hook_id: str) -> WebhookRecord:
        row = conn.execute(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (hook_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"webhook {hook_id} not found")
        return self._unreadable.parse_one("webhook", hook_id, _webhook, row)

    async def get_webhook(self, hook_id: str) -> WebhookRecord:
        return await self._read_one(lambda conn: self._webhook_by_id(conn, hook_id))

    async def list_webhooks(
        self, owner: str | None, offset: int = 0, limit: int = 50, workflow_id: str | None = None
    ) -> Page[WebhookRecord]:
        check_page(offset, limit)
        clauses, params = [], []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if workflow_id is not None:
            clauses.append("workflow_id = ?")
            params.append(workflow_id)
        where = _where(clauses)

        def work(conn: sqlite3.Connection) -> Page[WebhookRecord]:
            return self._newest_first(
                conn, "webhooks", _WEBHOOK_COLUMNS, where, params, offset, limit, "webhook", _webhook
            )

        return await self._read(work)

    async def update_webhook(self, hook_id: str, changes: WebhookChanges) -> WebhookRecord:
        values: dict[str, Any] = changes.options()
        if "enabled" in values:
            values["enabled"] = int(values["enabled"])
        if changes.sealed_secret is not None:
            values["sealed_secret"] = changes.sealed_secret
        values["updated_at"] = _to_ms(utcnow())
        assignments = ", ".join(f"{column} = ?" for column in values)  # names from the models, not input

        def work(conn: sqlite3.Connection) -> WebhookRecord:
            updated = conn.execute(
                f"UPDATE webhooks SET {assignments} WHERE id = ?", (*values.values(), hook_id)
            )
            if updated.rowcount == 0:
                raise NotFoundError(f"webhook {hook_id} not found")
            return self._webhook_by_id(conn, hook_id)

        return await self._write(work)

    async def delete_webhook(self, hook_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,)).rowcount == 0:
                raise NotFoundError(f"webhook {hook_id} not found")

        await self._write(work)

    # ------------------------------------------------------------ schedules

    @staticmethod
    def _schedule_values(schedule: ScheduleRecord) -> tuple[Any, ...]:
        return (
            schedule.owner,
            schedule.workflow_id,
            int(schedule.enabled),
            schedule.model_dump_json(),
            _to_ms(schedule.created_at),
            schedule.id,
        )

    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        check_storable(schedule, f"schedule {schedule.id}")

        def work(conn: sqlite3.Connection) -> ScheduleRecord:
            conn.execute(
                "INSERT INTO schedules (owner, workflow_id, enabled, record, created_at, id) "
                "VALUES (?,?,?,?,?,?)",
                self._schedule_values(schedule),
            )
            return self._schedule_by_id(conn, schedule.id)

        return await self._write(work)

    def _schedule_by_id(self, conn: sqlite3.Connection, schedule_id: str) -> ScheduleRecord:
        row = conn.execute("SELECT id, record FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"schedule {schedule_id} not found")
        return self._unreadable.parse_one("schedule", schedule_id, _schedule, row)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        return await self._read_one(lambda conn: self._schedule_by_id(conn, schedule_id))

    async def list_schedules(
        self,
        owner: str | None,
        offset: int = 0,
        limit: int = 50,
        workflow_id: str | None = None,
        enabled: bool | None = None,
    ) -> Page[ScheduleRecord]:
        check_page(offset, limit)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("owner", owner), ("workflow_id", workflow_id), ("enabled", enabled)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(int(value) if isinstance(value, bool) else value)
        where = _where(clauses)

        def work(conn: sqlite3.Connection) -> Page[ScheduleRecord]:
            return self._newest_first(
                conn, "schedules", "id, record", where, params, offset, limit, "schedule", _schedule
            )

        return await self._read(work)

    async def _change_schedule(
        self, schedule_id: str, change: Callable[[ScheduleRecord], ScheduleRecord]
    ) -> ScheduleRecord:
        def work(conn: sqlite3.Connection) -> ScheduleRecord:
            changed = change(self._schedule_by_id(conn, schedule_id))
            check_storable(changed, f"schedule {schedule_id}")
            conn.execute(
                "UPDATE schedules SET owner = ?, workflow_id = ?, enabled = ?, record = ?, created_at = ? "
                "WHERE id = ?",
                self._schedule_values(changed),
            )
            return changed

        return await self._write(work)

    async def update_schedule(
        self, schedule_id: str, settings: ScheduleSettings, since: datetime
    ) -> ScheduleRecord:
        return await self._change_schedule(schedule_id, lambda s: with_settings(s, settings, since))

    async def record_schedule_slot(
        self, schedule_id: str, slot: datetime, job_id: str | None, events: Sequence[ScheduleEvent]
    ) -> ScheduleRecord:
        return await self._change_schedule(schedule_id, lambda s: with_slot(s, slot, job_id, events))

    async def delete_schedule(self, schedule_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 0:
                raise NotFoundError(f"schedule {schedule_id} not found")

        await self._write(work)


def _schedule(row: sqlite3.Row) -> ScheduleRecord:
    return ScheduleRecord.model_validate_json(row["record"])


def _webhook(row: sqlite3.Row) -> WebhookRecord:
    return WebhookRecord(
        id=row["id"],
        owner=row["owner"],
        owner_roles=json.loads(row["owner_roles"]),
        workflow_id=row["workflow_id"],
        auth=row["auth"],
        respond=row["respond"],
        respond_timeout_s=row["respond_timeout_s"],
        delivery_id_header=row["delivery_id_header"],
        rate_limit_per_min=row["rate_limit_per_min"],
        enabled=bool(row["enabled"]),
        sealed_secret=bytes(row["sealed_secret"]),
        created_at=_from_ms(row["created_at"]),
        updated_at=_from_ms(row["updated_at"]),
    )


def _secret_info(row: sqlite3.Row) -> SecretInfo:
    return SecretInfo(
        name=row["name"], created_at=_from_ms(row["created_at"]), updated_at=_from_ms(row["updated_at"])
    )
