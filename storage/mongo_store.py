"""The production Store on MongoDB through motor.

Collections: `workflows` (latest version of each), `workflow_versions` (every version), `jobs` (one
document per job, its node checkpoints under `nodes.<node_id>`), `logs` (one document per entry,
ordered by a per-job sequence reserved on the job document).

User-shaped payloads (definitions, job input and result, node output, errors, log data, a job's
pending events) are kept as JSON text in `*_json` fields: their keys are the user's and may start
with '$' or contain '.', which MongoDB field names do not reliably support. Fields the store queries
stay native. What is too deep to read back is refused, and a document that cannot be read is skipped in
listings (storage/readable.py).

A standalone mongod has no multi-document transactions, so workflow writes are ordered to be
safe without them: the latest document is the source of truth, and a version is copied into
`workflow_versions` before the latest moves past it (and again right after), so no version is lost
if a writer dies between the two steps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, overload

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pydantic import TypeAdapter
from pydantic_core import to_json
from pymongo import ASCENDING, DESCENDING, ReturnDocument, WriteConcern
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from engine.errors import (
    ConflictError,
    InvalidWorkflowError,
    NotFoundError,
    Problem,
    StorageUnavailableError,
)
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
    WaitInfo,
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
from storage.name_search import ascii_case_insensitive_pattern
from storage.readable import UnreadableRows, check_storable

P = ParamSpec("P")
R = TypeVar("R")

_PENDING_EVENTS = TypeAdapter(list[JobEvent])

NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
WORKFLOW_UPDATE_ATTEMPTS = 10
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def _by_id(doc: dict[str, Any]) -> str:
    return str(doc.get("_id"))


def _unavailable_as_storage_error(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Report an unreachable server as StorageUnavailableError, which callers may retry."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StorageUnavailableError(f"MongoDB is unreachable: {exc}") from exc

    return wrapper


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    """The current time at the millisecond precision MongoDB stores."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _json(value: Any) -> str:
    return to_json(value).decode()


def _error_json(error: ErrorInfo | dict[str, Any] | None) -> str | None:
    if error is None:
        return None
    return error.model_dump_json() if isinstance(error, ErrorInfo) else _json(error)


def _error(text: str | None) -> ErrorInfo | None:
    return None if text is None else ErrorInfo.model_validate_json(text)


def _checked_node_id(node_id: str) -> str:
    """Node ids become field names (`nodes.<id>`): refuse any that could address another field."""
    if not NODE_ID_PATTERN.match(node_id):
        raise InvalidWorkflowError(
            [Problem("a node id may only contain letters, digits, '_' and '-'", node_id=node_id, field="id")]
        )
    return node_id


def _node_doc(node: NodeCheckpoint) -> dict[str, Any]:
    return {
        "node_id": _checked_node_id(node.node_id),
        "node_type": node.node_type,
        "status": str(node.status),
        "attempts": node.attempts,
        "started_at": node.started_at,
        "finished_at": node.finished_at,
        "inactive_targets": node.inactive_targets,
        "usage": node.usage,
        "output_json": _json(node.output),
        "error_json": _error_json(node.error),
        "rendered_config_json": _json(node.rendered_config),
        "kept_from": node.kept_from,
        "wait_json": None if node.wait is None else node.wait.model_dump_json(),
        "steps_json": _json(node.steps),
    }


def _node(doc: dict[str, Any]) -> NodeCheckpoint:
    return NodeCheckpoint(
        node_id=doc["node_id"],
        node_type=doc["node_type"],
        status=doc["status"],
        attempts=doc["attempts"],
        output=json.loads(doc["output_json"]),
        error=_error(doc["error_json"]),
        started_at=_utc(doc["started_at"]),
        finished_at=_utc(doc["finished_at"]),
        inactive_targets=doc["inactive_targets"],
        usage=doc["usage"],
        rendered_config=json.loads(doc.get("rendered_config_json", "null")),
        kept_from=doc.get("kept_from"),
        wait=None if doc.get("wait_json") is None else WaitInfo.model_validate_json(doc["wait_json"]),
        steps=json.loads(doc.get("steps_json", "{}")),
    )


def _job_doc(job: JobRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": job.id,
        "owner": job.owner,
        "workflow_id": job.workflow_id,
        "workflow_version": job.workflow_version,
        "status": str(job.status),
        "input_json": _json(job.input),
        "result_json": _json(job.result),
        "error_json": _error_json(job.error),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "version": job.version,
        "actor_name": job.actor_name,
        "event_sequence": job.event_sequence,
        "pending_events_json": _json(job.pending_events),
        "schema_version": job.schema_version,
        "owner_roles": job.owner_roles,
        "rerun_of": job.rerun_of,
        "waiting_on": job.waiting_on,
        "parent_job_id": job.parent_job_id,
        "parent_node_id": job.parent_node_id,
        "workflow_chain": job.workflow_chain,
        "called_versions": job.called_versions,
        "trigger": None if job.trigger is None else job.trigger.model_dump(),
        "nodes": {node_id: _node_doc(node) for node_id, node in job.nodes.items()},
        "log_count": 0,
    }
    if job.idempotency_key is not None:
        doc["idempotency_key"] = job.idempotency_key
    return doc


def _job(doc: dict[str, Any]) -> JobRecord:
    return JobRecord(
        id=doc["_id"],
        owner=doc["owner"],
        workflow_id=doc["workflow_id"],
        workflow_version=doc["workflow_version"],
        status=JobStatus(doc["status"]),
        input=json.loads(doc["input_json"]),
        result=json.loads(doc["result_json"]),
        error=_error(doc["error_json"]),
        created_at=_utc(doc["created_at"]),
        started_at=_utc(doc["started_at"]),
        finished_at=_utc(doc["finished_at"]),
        version=doc["version"],
        actor_name=doc["actor_name"],
        idempotency_key=doc.get("idempotency_key"),
        event_sequence=doc["event_sequence"],
        pending_events=_PENDING_EVENTS.validate_json(doc.get("pending_events_json", "[]")),
        nodes={node_id: _node(node) for node_id, node in doc["nodes"].items()},
        schema_version=doc["schema_version"],
        owner_roles=doc.get("owner_roles", []),
        rerun_of=doc.get("rerun_of"),
        waiting_on=doc.get("waiting_on", []),
        parent_job_id=doc.get("parent_job_id"),
        parent_node_id=doc.get("parent_node_id"),
        workflow_chain=doc.get("workflow_chain", []),
        called_versions=doc.get("called_versions", {}),
        trigger=None if doc.get("trigger") is None else TriggerRef.model_validate(doc["trigger"]),
    )


def _log_docs(job_id: str, first_seq: int, entries: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """A job's log documents, numbered from `first_seq` (the first of the numbers reserved for them)."""
    return [
        {
            "job_id": job_id,
            "seq": first_seq + index,
            "time": entry.time,
            "level": str(entry.level),
            "node_id": entry.node_id,
            "message": entry.message,
            "data_json": _json(entry.data),
        }
        for index, entry in enumerate(entries)
    ]


_CHANGE_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "status": ("status", str),
    "result": ("result_json", _json),
    "error": ("error_json", _error_json),
    "started_at": ("started_at", _utc),
    "finished_at": ("finished_at", _utc),
    "actor_name": ("actor_name", str),
    "event_sequence": ("event_sequence", int),
    "pending_events": ("pending_events_json", _json),
    "waiting_on": ("waiting_on", list),
}
"""JobChanges field -> (document field, encoder)."""


def _log_entry(doc: dict[str, Any]) -> LogEntry:
    return LogEntry(
        job_id=doc["job_id"],
        time=_utc(doc["time"]),
        level=doc["level"],
        node_id=doc["node_id"],
        message=doc["message"],
        data=json.loads(doc["data_json"]),
    )


def _job_sample(doc: dict[str, Any]) -> JobSample:
    return JobSample(
        workflow_id=doc["workflow_id"],
        status=doc["status"],
        started_at=_utc(doc.get("started_at")),
        finished_at=_utc(doc.get("finished_at")),
        nodes=[
            NodeSample(
                node_type=node["node_type"],
                status=node["status"],
                started_at=_utc(node.get("started_at")),
                finished_at=_utc(node.get("finished_at")),
                usage=node.get("usage"),
            )
            for node in doc["nodes"]
            if not node.get("kept_from")
        ],
    )


def _workflow(doc: dict[str, Any]) -> WorkflowRecord:
    return WorkflowRecord(
        id=doc.get("workflow_id", doc["_id"]),
        owner=doc["owner"],
        version=doc["version"],
        name=doc["name"],
        description=doc["description"],
        definition=WorkflowDefinition.model_validate_json(doc["definition_json"]),
        created_at=_utc(doc["created_at"]),
        updated_at=_utc(doc["updated_at"]),
    )


def _status_filter(status: JobStatus | Sequence[JobStatus]) -> dict[str, Any]:
    if isinstance(status, str):
        return {"status": str(JobStatus(status))}
    return {"status": {"$in": [str(JobStatus(s)) for s in status]}}


def _created_window(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    window: dict[str, Any] = {}
    if since is not None:
        window["$gte"] = since
    if until is not None:
        window["$lt"] = until
    return {"created_at": window} if window else {}


_ANALYTICS_PROJECTION = {
    "workflow_id": 1,
    "status": 1,
    "started_at": 1,
    "finished_at": 1,
    "nodes": {
        "$map": {
            "input": {"$objectToArray": {"$ifNull": ["$nodes", {}]}},
            "in": {
                "node_type": "$$this.v.node_type",
                "status": "$$this.v.status",
                "started_at": "$$this.v.started_at",
                "finished_at": "$$this.v.finished_at",
                "usage": "$$this.v.usage",
                "kept_from": "$$this.v.kept_from",
            },
        }
    },
}
"""Only what analytics reads: each node's type, status, times, usage and whether a re-run kept it (then it
counts in the job that ran it), not its output."""


class MongoStore:
    """Store on a MongoDB database; `write_concern_majority` makes job writes wait for a majority."""

    def __init__(
        self, client: AsyncIOMotorClient, database: str, *, write_concern_majority: bool = True
    ) -> None:
        self._client = client
        self._db = client[database]
        self._workflows: AsyncIOMotorCollection = self._db["workflows"]
        self._versions: AsyncIOMotorCollection = self._db["workflow_versions"]
        self._jobs: AsyncIOMotorCollection = self._db["jobs"]
        self._logs: AsyncIOMotorCollection = self._db["logs"]
        self._secrets: AsyncIOMotorCollection = self._db["secrets"]
        self._signals: AsyncIOMotorCollection = self._db.get_collection(
            "signals", write_concern=WriteConcern("majority") if write_concern_majority else None
        )
        self._durable_jobs: AsyncIOMotorCollection = (
            self._db.get_collection("jobs", write_concern=WriteConcern("majority"))
            if write_concern_majority
            else self._jobs
        )
        self._unreadable = UnreadableRows()
        self._webhooks: AsyncIOMotorCollection = self._db["webhooks"]
        self._schedules: AsyncIOMotorCollection = self._db["schedules"]

    @classmethod
    def from_url(cls, url: str, database: str, *, write_concern_majority: bool = True) -> MongoStore:
        client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
            url, tz_aware=True, serverSelectionTimeoutMS=10_000
        )
        return cls(client, database, write_concern_majority=write_concern_majority)

    @_unavailable_as_storage_error
    async def start(self) -> None:
        # One create_index call each: mongomock's create_indexes drops partialFilterExpression.
        by_owner = [("owner", ASCENDING), *NEWEST_FIRST]
        await self._workflows.create_index(by_owner, name="by_owner")
        await self._workflows.create_index(NEWEST_FIRST, name="by_created")
        await self._versions.create_index(
            [("workflow_id", ASCENDING), ("version", ASCENDING)], unique=True, name="version"
        )
        await self._jobs.create_index(
            [("owner", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
            name="idempotency",
        )
        await self._jobs.create_index(by_owner, name="by_owner")
        await self._jobs.create_index([("workflow_id", ASCENDING), *NEWEST_FIRST], name="by_workflow")
        await self._jobs.create_index(NEWEST_FIRST, name="by_created")
        await self._jobs.create_index(
            [("owner", ASCENDING), ("status", ASCENDING), *NEWEST_FIRST], name="by_owner_status"
        )
        await self._jobs.create_index([("status", ASCENDING), *NEWEST_FIRST], name="by_status")
        await self._logs.create_index([("job_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="by_job")
        await self._secrets.create_index(
            [("owner", ASCENDING), ("name", ASCENDING)], unique=True, name="by_owner_name"
        )
        await self._jobs.create_index(
            NEWEST_FIRST, partialFilterExpression={"waiting_on.0": {"$exists": True}}, name="waiting"
        )
        await self._jobs.create_index([("parent_job_id", ASCENDING), *NEWEST_FIRST], name="by_parent")
        await self._jobs.create_index(
            [("trigger.id", ASCENDING), *NEWEST_FIRST],
            partialFilterExpression={"trigger.id": {"$type": "string"}},
            name="by_trigger",
        )
        await self._signals.create_index([("job_id", ASCENDING), ("seq", ASCENDING)], name="by_job")
        await self._signals.create_index(
            [("job_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
            name="idempotency",
        )
        await self._webhooks.create_index(by_owner, name="by_owner")
        await self._webhooks.create_index([("workflow_id", ASCENDING), *NEWEST_FIRST], name="by_workflow")
        await self._schedules.create_index(by_owner, name="by_owner")
        await self._schedules.create_index(NEWEST_FIRST, name="by_created")
        await self._schedules.create_index([("workflow_id", ASCENDING)], name="by_workflow")

    async def close(self) -> None:
        self._client.close()

    async def ping(self) -> bool:
        try:
            reply = await self._db.command("ping")
        except PyMongoError:
            return False
        return bool(reply.get("ok"))

    def unreadable_rows(self) -> int:
        return self._unreadable.count

    def _read_job(self, doc: dict[str, Any]) -> JobRecord:
        return self._unreadable.parse_one("job", _by_id(doc), _job, doc)

    def _read_workflow(self, doc: dict[str, Any], version: int | None = None) -> WorkflowRecord:
        name = doc.get("workflow_id", doc.get("_id"))
        row_id = str(name) if version is None else f"{name} version {version}"
        return self._unreadable.parse_one("workflow", row_id, _workflow, doc)

    # workflows

    async def _record_version(self, latest: dict[str, Any]) -> None:
        """Copy a latest-workflow document into workflow_versions (idempotent)."""
        version = {key: value for key, value in latest.items() if key not in ("_id", "deleted")}
        version["workflow_id"] = latest["_id"]
        key = {"workflow_id": latest["_id"], "version": latest["version"]}
        with contextlib.suppress(DuplicateKeyError):  # a concurrent writer stored this same version first
            await self._versions.replace_one(key, version, upsert=True)

    @_unavailable_as_storage_error
    async def create_workflow(
        self, owner: str, definition: WorkflowDefinition, workflow_id: str | None = None
    ) -> WorkflowRecord:
        check_storable(definition, "the workflow definition")
        now = _now()
        doc = {
            "_id": workflow_id or uuid.uuid4().hex,
            "owner": owner,
            "version": 1,
            "name": definition.name,
            "description": definition.description,
            "definition_json": definition.model_dump_json(),
            "created_at": now,
            "updated_at": now,
            "deleted": False,
        }
        try:
            await self._workflows.insert_one(doc)
        except DuplicateKeyError as exc:
            raise ConflictError(f"workflow {doc['_id']} already exists") from exc
        await self._record_version(doc)
        return _workflow(doc)

    async def _live_workflow(self, workflow_id: str) -> dict[str, Any]:
        doc = await self._workflows.find_one({"_id": workflow_id, "deleted": False})
        if doc is None:
            raise NotFoundError(f"workflow {workflow_id} not found")
        return doc

    @_unavailable_as_storage_error
    async def get_workflow(self, workflow_id: str, version: int | None = None) -> WorkflowRecord:
        if version is None:
            return self._read_workflow(await self._live_workflow(workflow_id))
        doc = await self._versions.find_one({"workflow_id": workflow_id, "version": version})
        if doc is None:
            doc = await self._workflows.find_one({"_id": workflow_id, "version": version})
        if doc is None:
            raise NotFoundError(f"workflow {workflow_id} version {version} not found")
        return self._read_workflow(doc, version)

    @_unavailable_as_storage_error
    async def list_workflows(
        self, owner: str | None, offset: int = 0, limit: int = 50, name_contains: str | None = None
    ) -> Page[WorkflowRecord]:
        check_page(offset, limit)
        query: dict[str, Any] = {"deleted": False}
        if owner is not None:
            query["owner"] = owner
        if name_contains:
            query["name"] = {"$regex": ascii_case_insensitive_pattern(name_contains)}
        return await self._page(
            self._workflows, query, NEWEST_FIRST, offset, limit, "workflow", _by_id, _workflow
        )

    @_unavailable_as_storage_error
    async def list_workflow_versions(
        self, workflow_id: str, offset: int = 0, limit: int = 50
    ) -> Page[WorkflowRecord]:
        check_page(offset, limit)
        query = {"workflow_id": workflow_id}
        page = await self._page(
            self._versions,
            query,
            [("version", DESCENDING)],
            offset,
            limit,
            "workflow version",
            lambda doc: f"{doc.get('workflow_id')}/{doc.get('version')}",
            _workflow,
        )
        if page.total == 0:
            raise NotFoundError(f"workflow {workflow_id} not found")
        return page

    @_unavailable_as_storage_error
    async def update_workflow(self, workflow_id: str, definition: WorkflowDefinition) -> WorkflowRecord:
        check_storable(definition, "the workflow definition")
        changes = {
            "name": definition.name,
            "description": definition.description,
            "definition_json": definition.model_dump_json(),
        }
        for _ in range(WORKFLOW_UPDATE_ATTEMPTS):
            current = await self._live_workflow(workflow_id)
            await self._record_version(current)
            updated = await self._workflows.find_one_and_update(
                {"_id": workflow_id, "version": current["version"], "deleted": False},
                {"$set": {**changes, "updated_at": _now()}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if updated is not None:
                await self._record_version(updated)
                return _workflow(updated)
        raise ConflictError(
            f"workflow {workflow_id} kept changing during {WORKFLOW_UPDATE_ATTEMPTS} update attempts"
        )

    @_unavailable_as_storage_error
    async def delete_workflow(self, workflow_id: str) -> None:
        await self._record_version(await self._live_workflow(workflow_id))
        deleted = await self._workflows.update_one(
            {"_id": workflow_id, "deleted": False}, {"$set": {"deleted": True}}
        )
        if deleted.matched_count == 0:
            raise NotFoundError(f"workflow {workflow_id} not found")

    # jobs

    async def _job_by_key(self, owner: str, idempotency_key: str) -> JobRecord | None:
        doc = await self._jobs.find_one({"owner": owner, "idempotency_key": idempotency_key})
        return None if doc is None else self._read_job(doc)

    @_unavailable_as_storage_error
    async def create_job(self, job: JobRecord) -> JobRecord:
        check_storable(job, f"job {job.id}")
        if job.idempotency_key is not None:
            existing = await self._job_by_key(job.owner, job.idempotency_key)
            if existing is not None:
                return existing
        try:
            await self._durable_jobs.insert_one(_job_doc(job))
        except DuplicateKeyError as exc:
            if job.idempotency_key is not None:
                existing = await self._job_by_key(job.owner, job.idempotency_key)
                if existing is not None:
                    return existing
            raise ConflictError(f"job {job.id} already exists") from exc
        return await self.get_job(job.id)

    @_unavailable_as_storage_error
    async def get_job(self, job_id: str) -> JobRecord:
        doc = await self._jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFoundError(f"job {job_id} not found")
        return self._read_job(doc)

    @_unavailable_as_storage_error
    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return []
        docs = [doc async for doc in self._jobs.find({"_id": {"$in": wanted}})]
        return self._unreadable.parse_each("job", docs, _by_id, _job)

    @_unavailable_as_storage_error
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
        query: dict[str, Any] = {}
        if parent_job_id is not None:
            query["parent_job_id"] = parent_job_id
        if trigger_id is not None:
            query["trigger.id"] = trigger_id
        if waiting is not None:
            query["waiting_on.0"] = {"$exists": waiting}
        if owner is not None:
            query["owner"] = owner
        if workflow_id is not None:
            query["workflow_id"] = workflow_id
        if status is not None:
            query.update(_status_filter(status))
        return await self._page(self._jobs, query, NEWEST_FIRST, offset, limit, "job", _by_id, _job)

    @_unavailable_as_storage_error
    async def checkpoint(
        self,
        job_id: str,
        expected_version: int,
        changes: JobChanges,
        nodes: Sequence[NodeCheckpoint] = (),
        logs: Sequence[LogEntry] = (),
    ) -> int:
        """The job's changes and nodes in one update, which also reserves the log entries' sequence
        numbers (`log_count`); the entries are inserted right after it. Without multi-document
        transactions a crash between the two loses that commit's log lines, but never mis-numbers them:
        their numbers stay reserved, so later entries still sort after them."""
        strays = sorted({entry.job_id for entry in logs} - {job_id})
        if strays:
            raise ValueError(
                f"a checkpoint of job {job_id} cannot store log entries of job {', '.join(strays)}"
            )
        check_storable((changes, nodes, logs), f"the checkpoint of job {job_id}")
        fields: dict[str, Any] = {}
        for name, value in changes.as_updates().items():
            field, encode = _CHANGE_FIELDS[name]
            fields[field] = encode(value)
        for node in nodes:
            fields[f"nodes.{_checked_node_id(node.node_id)}"] = _node_doc(node)
        update: dict[str, Any] = {"$inc": {"version": 1, "log_count": len(logs)}}
        if fields:
            update["$set"] = fields
        doc = await self._durable_jobs.find_one_and_update(
            {"_id": job_id, "version": expected_version},
            update,
            projection={"version": True, "log_count": True},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            if logs:
                first_seq = doc["log_count"] - len(logs) + 1
                await self._logs.insert_many(_log_docs(job_id, first_seq, logs), ordered=True)
            return doc["version"]
        stored = await self._jobs.find_one({"_id": job_id}, projection={"version": True})
        if stored is None:
            raise NotFoundError(f"job {job_id} not found")
        raise ConflictError(
            f"job {job_id} checkpoint expected version {expected_version}, "
            f"but the stored version is {stored['version']}"
        )

    # logs

    @_unavailable_as_storage_error
    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        check_storable(entries, "the log entries")
        by_job: dict[str, list[LogEntry]] = {}
        for entry in entries:
            by_job.setdefault(entry.job_id, []).append(entry)
        for job_id, job_entries in by_job.items():
            reserved = await self._jobs.find_one_and_update(
                {"_id": job_id},
                {"$inc": {"log_count": len(job_entries)}},
                projection={"log_count": True},
                return_document=ReturnDocument.AFTER,
            )
            if reserved is None:
                raise NotFoundError(f"cannot append logs: job {job_id} not found")
            first_seq = reserved["log_count"] - len(job_entries) + 1
            await self._logs.insert_many(_log_docs(job_id, first_seq, job_entries), ordered=True)

    @_unavailable_as_storage_error
    async def list_logs(
        self, job_id: str, offset: int = 0, limit: int = 100, node_id: str | None = None
    ) -> Page[LogEntry]:
        check_page(offset, limit)
        query = {"job_id": job_id} if node_id is None else {"job_id": job_id, "node_id": node_id}
        return await self._page(
            self._logs,
            query,
            [("seq", ASCENDING)],
            offset,
            limit,
            "log entry",
            lambda doc: f"{doc.get('job_id')}/{doc.get('seq')}",
            _log_entry,
        )

    async def _page(
        self,
        collection: AsyncIOMotorCollection[dict[str, Any]],
        query: dict[str, Any],
        sort: list[tuple[str, int]],
        offset: int,
        limit: int,
        kind: str,
        row_id: Callable[[dict[str, Any]], str],
        parse: Callable[[dict[str, Any]], R],
    ) -> Page[R]:
        """One page of a listing: the total that match, and the readable ones of this page in order."""
        total = await collection.count_documents(query)
        cursor = collection.find(query).sort(sort).skip(offset).limit(limit)
        docs = [doc async for doc in cursor]
        items = self._unreadable.parse_each(kind, docs, row_id, parse)
        return Page(items=items, total=total, offset=offset, limit=limit)

    # analytics

    async def _job_samples(
        self, owner: str | None, since: datetime | None, until: datetime | None
    ) -> list[JobSample]:
        match: dict[str, Any] = _created_window(since, until)
        if owner is not None:
            match["owner"] = owner
        pipeline = [{"$match": match}, {"$project": _ANALYTICS_PROJECTION}]
        docs = [doc async for doc in self._jobs.aggregate(pipeline)]
        return self._unreadable.parse_each("job", docs, _by_id, _job_sample)

    @_unavailable_as_storage_error
    async def job_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> JobAnalytics:
        return fold_job_analytics(await self._job_samples(owner, since, until), since, until)

    @_unavailable_as_storage_error
    async def workflow_analytics(
        self, owner: str | None, since: datetime | None = None, until: datetime | None = None
    ) -> WorkflowAnalytics:
        tally = WorkflowTally().add_all(await self._job_samples(owner, since, until))
        names = {
            doc["_id"]: doc["name"]
            async for doc in self._workflows.find(
                {"_id": {"$in": tally.workflow_ids}}, projection={"name": True}
            )
        }
        return tally.analytics(names, since, until)

    # signals

    @_unavailable_as_storage_error
    async def put_signal(self, signal: SignalRecord) -> tuple[SignalRecord, bool]:
        """Signals of a job keep the order they were stored in by `seq`, a counter in the job's
        document (`signal_count`) reserved before the insert."""
        check_storable(signal, f"signal {signal.name} of job {signal.job_id}")
        key = signal.idempotency_key
        if key is not None:
            existing = await self._signals.find_one({"job_id": signal.job_id, "idempotency_key": key})
            if existing is not None:
                return _signal(existing), False
        reserved = await self._jobs.find_one_and_update(
            {"_id": signal.job_id},
            {"$inc": {"signal_count": 1}},
            projection={"signal_count": True},
            return_document=ReturnDocument.AFTER,
        )
        if reserved is None:
            raise NotFoundError(f"job {signal.job_id} not found")
        doc = {**signal.model_dump(mode="python"), "_id": signal.id, "seq": reserved["signal_count"]}
        doc["created_at"] = _utc(signal.created_at)
        try:
            await self._signals.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._signals.find_one({"job_id": signal.job_id, "idempotency_key": key})
            if existing is None:
                raise
            return _signal(existing), False
        return signal, True

    @_unavailable_as_storage_error
    async def list_signals(self, job_id: str) -> list[SignalRecord]:
        cursor = self._signals.find({"job_id": job_id}).sort("seq", ASCENDING)
        return [_signal(doc) async for doc in cursor]

    # secrets

    @_unavailable_as_storage_error
    async def put_secret(self, owner: str, name: str, sealed: bytes) -> tuple[SecretInfo, bool]:
        now = _now()
        before = await self._secrets.find_one_and_update(
            {"owner": owner, "name": name},
            {"$set": {"sealed": sealed, "updated_at": now}, "$setOnInsert": {"created_at": now}},
            upsert=True,
            projection={"_id": 1},
        )
        stored = await self._secrets.find_one({"owner": owner, "name": name}, {"sealed": 0})
        if stored is None:  # deleted between the two calls
            raise NotFoundError(f"no secret named {name!r}")
        return _secret_info(stored), before is None

    @_unavailable_as_storage_error
    async def list_secrets(self, owner: str) -> list[SecretInfo]:
        cursor = self._secrets.find({"owner": owner}, {"sealed": 0}).sort("name", ASCENDING)
        return [_secret_info(doc) async for doc in cursor]

    @_unavailable_as_storage_error
    async def sealed_secrets(self, owner: str) -> dict[str, bytes]:
        cursor = self._secrets.find({"owner": owner}, {"name": 1, "sealed": 1})
        return {doc["name"]: bytes(doc["sealed"]) async for doc in cursor}

    @_unavailable_as_storage_error
    async def delete_secret(self, owner: str, name: str) -> None:
        deleted = await self._secrets.delete_one({"owner": owner, "name": name})
        if deleted.deleted_count == 0:
            raise NotFoundError(f"no secret named {name!r}")

    # webhooks (issue 17)

    @_unavailable_as_storage_error
    async def create_webhook(self, hook: WebhookRecord) -> WebhookRecord:
        doc = {**hook.model_dump(mode="python", exclude={"id"}), "_id": hook.id}
        doc |= {"sealed_secret": hook.sealed_secret, "created_at": _utc(hook.created_at)}
        doc["updated_at"] = _utc(hook.updated_at)
        await self._webhooks.insert_one(doc)
        return await self.get_webhook(hook.id)

    @_unavailable_as_storage_error
    async def get_webhook(self, hook_id: str) -> WebhookRecord:
        doc = await self._webhooks.find_one({"_id": hook_id})
        if doc is None:
            raise NotFoundError(f"webhook {hook_id} not found")
        return self._unreadable.parse_one("webhook", hook_id, _webhook, doc)

    @_unavailable_as_storage_error
    async def list_webhooks(
        self, owner: str | None, offset: int = 0, limit: int = 50, workflow_id: str | None = None
    ) -> Page[WebhookRecord]:
        check_page(offset, limit)
        query: dict[str, Any] = {}
        if owner is not None:
            query["owner"] = owner
        if workflow_id is not None:
            query["workflow_id"] = workflow_id
        total = await self._webhooks.count_documents(query)
        cursor = self._webhooks.find(query).sort(NEWEST_FIRST).skip(offset).limit(limit)
        items = self._unreadable.parse_each("webhook", [doc async for doc in cursor], _by_id, _webhook)
        return Page(items=items, total=total, offset=offset, limit=limit)

    @_unavailable_as_storage_error
    async def update_webhook(self, hook_id: str, changes: WebhookChanges) -> WebhookRecord:
        values: dict[str, Any] = {**changes.options(), "updated_at": _now()}
        if changes.sealed_secret is not None:
            values["sealed_secret"] = changes.sealed_secret
        doc = await self._webhooks.find_one_and_update(
            {"_id": hook_id}, {"$set": values}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFoundError(f"webhook {hook_id} not found")
        return self._unreadable.parse_one("webhook", hook_id, _webhook, doc)

    @_unavailable_as_storage_error
    async def delete_webhook(self, hook_id: str) -> None:
        if (await self._webhooks.delete_one({"_id": hook_id})).deleted_count == 0:
            raise NotFoundError(f"webhook {hook_id} not found")

    # ------------------------------------------------------------ schedules

    @_unavailable_as_storage_error
    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        check_storable(schedule, f"schedule {schedule.id}")
        await self._schedules.insert_one({"_id": schedule.id, **_schedule_doc(schedule), "revision": 0})
        return schedule

    async def _schedule_doc(self, schedule_id: str) -> dict[str, Any]:
        doc = await self._schedules.find_one({"_id": schedule_id})
        if doc is None:
            raise NotFoundError(f"schedule {schedule_id} not found")
        return doc

    @_unavailable_as_storage_error
    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        return self._unreadable.parse_one(
            "schedule", schedule_id, _schedule, await self._schedule_doc(schedule_id)
        )

    @_unavailable_as_storage_error
    async def list_schedules(
        self,
        owner: str | None,
        offset: int = 0,
        limit: int = 50,
        workflow_id: str | None = None,
        enabled: bool | None = None,
    ) -> Page[ScheduleRecord]:
        check_page(offset, limit)
        query = {
            field: value
            for field, value in (("owner", owner), ("workflow_id", workflow_id), ("enabled", enabled))
            if value is not None
        }
        return await self._page(
            self._schedules, query, NEWEST_FIRST, offset, limit, "schedule", _by_id, _schedule
        )

    async def _change_schedule(
        self, schedule_id: str, change: Callable[[ScheduleRecord], ScheduleRecord]
    ) -> ScheduleRecord:
        """Read, change and write back when nobody wrote in between (the `revision` counter), else again:
        a standalone mongod has no transactions."""
        while True:
            doc = await self._schedule_doc(schedule_id)
            changed = change(self._unreadable.parse_one("schedule", schedule_id, _schedule, doc))
            check_storable(changed, f"schedule {schedule_id}")
            written = await self._schedules.update_one(
                {"_id": schedule_id, "revision": doc["revision"]},
                {"$set": _schedule_doc(changed), "$inc": {"revision": 1}},
            )
            if written.matched_count:
                return changed

    @_unavailable_as_storage_error
    async def update_schedule(
        self, schedule_id: str, settings: ScheduleSettings, since: datetime
    ) -> ScheduleRecord:
        return await self._change_schedule(schedule_id, lambda s: with_settings(s, settings, since))

    @_unavailable_as_storage_error
    async def record_schedule_slot(
        self, schedule_id: str, slot: datetime, job_id: str | None, events: Sequence[ScheduleEvent]
    ) -> ScheduleRecord:
        return await self._change_schedule(schedule_id, lambda s: with_slot(s, slot, job_id, events))

    @_unavailable_as_storage_error
    async def delete_schedule(self, schedule_id: str) -> None:
        if (await self._schedules.delete_one({"_id": schedule_id})).deleted_count == 0:
            raise NotFoundError(f"schedule {schedule_id} not found")


def _schedule_doc(schedule: ScheduleRecord) -> dict[str, Any]:
    """The fields queried stay native; the record itself is JSON text (its input is the user's)."""
    return {
        "owner": schedule.owner,
        "workflow_id": schedule.workflow_id,
        "enabled": schedule.enabled,
        "created_at": _utc(schedule.created_at),
        "record_json": schedule.model_dump_json(),
    }


def _schedule(doc: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord.model_validate_json(doc["record_json"])


def _webhook(doc: dict[str, Any]) -> WebhookRecord:
    fields = {name: value for name, value in doc.items() if name != "_id"}
    fields |= {"id": doc["_id"], "sealed_secret": bytes(doc["sealed_secret"])}
    fields |= {"created_at": _utc(doc["created_at"]), "updated_at": _utc(doc["updated_at"])}
    return WebhookRecord(**fields)


def _signal(doc: dict[str, Any]) -> SignalRecord:
    return SignalRecord(
        id=doc["_id"],
        job_id=doc["job_id"],
        name=doc["name"],
        payload=doc.get("payload", {}),
        sender=doc["sender"],
        idempotency_key=doc.get("idempotency_key"),
        created_at=_utc(doc["created_at"]),
    )


def _secret_info(doc: dict[str, Any]) -> SecretInfo:
    return SecretInfo(
        name=doc["name"], created_at=_utc(doc["created_at"]), updated_at=_utc(doc["updated_at"])
    )
