"""Drives one job through its DAG: the loop inside a job actor, free of Ray so it is tested alone.

All state changes pass through `_commit`: the scheduling step's decisions are applied in memory,
stored as one checkpoint together with their events (the job's outbox) and log entries, then their
events are published in one round trip to the bus and their actions carried out. Events that are ready
together are committed together (a group commit), so a chain of quick nodes costs one checkpoint per
node, and the store is never behind an event a client has seen. A runner that dies after a checkpoint
but before publishing its events leaves them in the outbox: the next run publishes them first, and the
bus drops those the job's stream already has.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from actors.launcher import NodeLauncher
from actors.node_attempt import NodeTasks, full_jitter
from engine.dag import Dag
from engine.errors import ConditionError, ConflictError
from engine.records import (
    ErrorInfo,
    EventType,
    JobChanges,
    JobEvent,
    JobRecord,
    JobStatus,
    LogEntry,
    LogLevel,
    NodeCheckpoint,
    NodeStatus,
    utcnow,
)
from engine.redaction import Redactor
from engine.scheduler import (
    Begin,
    CancelRequested,
    Decision,
    Emit,
    JobState,
    SchedulerEvent,
    apply,
    step,
)
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult
from nodes.registry import NodeRegistry
from nodes.services import NodeServices
from nodes.settings import NodeSettings
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

MAX_EVENT_OUTPUT_CHARS = 16_384
MAX_RENDERED_CONFIG_CHARS = 16_384
PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Progress:
    """A running node's progress (a map node's item counts): an event, not a state change."""

    node_id: str
    data: dict[str, Any]


@dataclass
class RunnerServices:
    store: Store
    bus: EventBus
    registry: NodeRegistry
    launcher: NodeLauncher
    node_settings: NodeSettings
    """What the job's nodes read where they run (the `nodes` section of the settings)."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow
    jitter: Callable[[float], float] = full_jitter


class JobRunner:
    """Runs one job to a terminal state, from its checkpoint; `cancel` may be called at any time."""

    def __init__(self, services: RunnerServices, job: JobRecord, dag: Dag) -> None:
        self.s = services
        self.job = job
        self.dag = dag
        self.state = JobState.restore(dag, job.status, job.nodes)
        self.version = job.version
        self.sequence = job.event_sequence
        self.redactor = Redactor(services.secrets)
        self._inbox: asyncio.Queue[SchedulerEvent | Progress] = asyncio.Queue()
        self._last_progress: dict[str, float] = {}
        self._nodes = NodeTasks(
            dag, self._execute, self._inbox.put_nowait, services.clock, services.jitter, f"{job.id}:"
        )
        self._log_writes: set[asyncio.Task[None]] = set()
        self._rendered_configs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {
            node_id: node.output
            for node_id, node in self.state.nodes.items()
            if node.status in (NodeStatus.COMPLETED, NodeStatus.FAILED)
        }

    def cancel(self, reason: str = "cancelled by request") -> None:
        self._inbox.put_nowait(CancelRequested(self.s.clock(), reason))

    async def run(self) -> JobStatus:
        try:
            await self._publish_outbox()
            await self._commit([Begin(self.s.clock())])
            while not self.state.status.is_terminal:
                batch = [await self._inbox.get()]
                while not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                await self._commit(batch)
        except ConflictError:
            stored = await self.s.store.get_job(self.job.id)
            if not stored.status.is_terminal:
                raise
            self.state.status = stored.status
        finally:
            await self._nodes.cancel_all()
            if self._log_writes:
                await asyncio.gather(*self._log_writes, return_exceptions=True)
        return self.state.status

    async def _publish_outbox(self) -> None:
        """Publish the last checkpoint's events again; the bus drops those already published."""
        pending = self.job.pending_events
        ids = await self.s.bus.publish_many(pending)
        published = [event for event, entry_id in zip(pending, ids, strict=True) if entry_id is not None]
        if published:
            logger.warning(
                "job %s: published %d events (sequences %d-%d) that its last run stored but never published",
                self.job.id,
                len(published),
                published[0].sequence,
                published[-1].sequence,
                extra={"job_id": self.job.id},
            )

    # ------------------------------------------------------------ the one mutation point

    async def _commit(self, events: list[SchedulerEvent | Progress]) -> None:
        decisions: list[Decision] = []
        changed: dict[str, Any] = {}
        status_before = self.state.status
        job_changes = JobChanges()
        for event in events:
            decision = (
                self._progress_decision(event)
                if isinstance(event, Progress)
                else step(self.dag, self.state, event)
            )
            if decision.is_empty:
                continue
            apply(self.state, decision)
            decisions.append(decision)
            changed.update(decision.changes)
            if decision.status is not None:
                job_changes = self._job_changes(job_changes, decision)
        if not decisions:
            return
        job_events = self._events(decisions)
        job_changes.event_sequence = self.sequence + len(job_events)
        job_changes.pending_events = job_events
        redacted_nodes = [self._redacted(node) for node in changed.values()]
        self.version = await self.s.store.checkpoint(
            self.job.id, self.version, job_changes, redacted_nodes, self._log_entries(job_events)
        )
        self.sequence = job_changes.event_sequence
        for node in changed.values():
            if node.status in (NodeStatus.COMPLETED, NodeStatus.FAILED):
                self._outputs[node.node_id] = node.output
        await self.s.bus.publish_many(job_events)
        if self.state.status.is_terminal and not status_before.is_terminal:
            logger.info("job %s %s", self.job.id, self.state.status.value, extra={"job_id": self.job.id})
        for decision in decisions:
            for action in decision.actions:
                self._nodes.perform(action)

    def _progress_decision(self, progress: Progress) -> Decision:
        if self.state.nodes[progress.node_id].status is not NodeStatus.RUNNING:
            return Decision()
        return Decision(events=[Emit(EventType.NODE_PROGRESS, progress.node_id, progress.data)])

    async def _report_progress(self, node_id: str, data: dict[str, Any]) -> None:
        """Queue a progress event, at most one per PROGRESS_INTERVAL_S per node, and always the last."""
        now = asyncio.get_running_loop().time()
        final = data.get("succeeded", 0) + data.get("failed", 0) >= data.get("total", 0)
        if not final and now - self._last_progress.get(node_id, 0.0) < PROGRESS_INTERVAL_S:
            return
        self._last_progress[node_id] = now
        self._inbox.put_nowait(Progress(node_id, data))

    def _redacted(self, node: NodeCheckpoint) -> NodeCheckpoint:
        """The node as it is stored: secrets masked, with the config its last attempt ran with."""
        rendered = self._rendered_configs.get(node.node_id)
        if rendered is not None:
            node = node.model_copy(update={"rendered_config": rendered})
        if not self.redactor.active:
            return node
        error = self._redacted_error(node.error)
        return node.model_copy(update={"output": self.redactor.redact(node.output), "error": error})

    def _redacted_error(self, error: ErrorInfo | None) -> ErrorInfo | None:
        if error is None or not self.redactor.active:
            return error
        return error.model_copy(
            update={
                "message": self.redactor.redact_text(error.message),
                "details": self.redactor.redact(error.details),
            }
        )

    def _job_changes(self, changes: JobChanges, decision: Decision) -> JobChanges:
        now = self.s.clock()
        changes.status = decision.status
        if decision.status is JobStatus.RUNNING:
            changes.started_at = now
        if decision.status is not None and decision.status.is_terminal:
            changes.finished_at = now
            changes.result = self.redactor.redact(decision.result)
            changes.error = self._redacted_error(decision.error)
        return changes

    def _events(self, decisions: list[Decision]) -> list[JobEvent]:
        events = []
        sequence = self.sequence
        for decision in decisions:
            for emit in decision.events:
                sequence += 1
                data = self.redactor.redact(emit.data)
                if "output" in data:
                    data["output"] = _capped_for_event(data["output"])
                if emit.type.value.startswith("job_") and emit.type is not EventType.JOB_STARTED:
                    data["status"] = self.state.status.value
                events.append(
                    JobEvent(
                        sequence=sequence,
                        type=emit.type,
                        time=self.s.clock(),
                        job_id=self.job.id,
                        workflow_id=self.job.workflow_id,
                        node_id=emit.node_id,
                        data=data,
                    )
                )
        return events

    def _log_entries(self, events: list[JobEvent]) -> list[LogEntry]:
        entries = []
        for event in events:
            level = (
                LogLevel.ERROR
                if event.type in (EventType.NODE_FAILED, EventType.JOB_FAILED)
                else (LogLevel.WARNING if event.type is EventType.NODE_RETRYING else LogLevel.INFO)
            )
            data = {k: v for k, v in event.data.items() if k != "output"}
            subject = f"node {event.node_id}" if event.node_id else "job"
            entries.append(
                LogEntry(
                    job_id=self.job.id,
                    time=event.time,
                    level=level,
                    node_id=event.node_id,
                    message=f"{subject}: {event.type.removeprefix('job_').removeprefix('node_')}",
                    data=data,
                )
            )
        return entries

    # ------------------------------------------------------------ running a node

    async def _execute(self, node_id: str, attempt: int) -> NodeResult:
        spec = self.dag.nodes[node_id]
        node = self.s.registry.get(spec.type)
        scope = TemplateContext(input=self.job.input, nodes=self._outputs, secrets=self.s.secrets)
        config = node.render_config(spec.config, scope, node_id)
        self._rendered_configs[node_id] = self._shown_config(config)
        ctx = NodeContext(
            job_id=self.job.id,
            workflow_id=self.job.workflow_id,
            node_id=node_id,
            attempt=attempt,
            scope=scope,
            predecessors=self.dag.predecessors[node_id],
            services=self._node_services(),
            log=self._node_log(node_id),
        )
        try:
            return await self.s.launcher.run(node, config, ctx)
        except ConditionError as exc:
            raise ConditionError(f"node '{node_id}' {exc.message}") from None

    def _node_services(self) -> NodeServices:
        """What the job's nodes get where the launcher runs them here: on Ray only inline nodes, since an I/O
        or CPU node is shipped with the settings and gets the services of where it runs (an executor's
        provider limiter). The in-process launcher runs every node here, with no provider limit."""
        return NodeServices(
            settings=self.s.node_settings,
            registry=self.s.registry,
            llm_limiter=None,
            emit_token=None,
            fan_out=self.s.launcher.fan_out,
            progress=self._report_progress,
            dns_resolver=None,
        )

    def _shown_config(self, config: BaseModel) -> Any:
        """A rendered config as it may be stored and shown: dumped in Python mode first, so secret fields
        stay masked (the LLM node ships its api_key whole only in JSON mode, to its executor), then every
        secret value masked, then capped in size."""
        shown = self.redactor.redact(to_jsonable_python(config.model_dump(), fallback=str))
        return _capped(shown, MAX_RENDERED_CONFIG_CHARS, "the rendered config is too large to keep")

    def _node_log(self, node_id: str) -> Callable[[LogLevel, str, dict[str, Any]], None]:
        def log(level: LogLevel, message: str, data: dict[str, Any]) -> None:
            entry = LogEntry(
                job_id=self.job.id,
                level=level,
                node_id=node_id,
                message=self.redactor.redact_text(message),
                data=self.redactor.redact(data),
            )
            task = asyncio.get_running_loop().create_task(self.s.store.append_logs([entry]))
            self._log_writes.add(task)
            task.add_done_callback(self._log_writes.discard)
            task.add_done_callback(_report_log_failure)

        return log


def _report_log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("could not store a node log entry: %s", task.exception())


def _capped_for_event(output: Any) -> Any:
    """Events carry small outputs whole; a large one is replaced by a note to read it from the job."""
    return _capped(output, MAX_EVENT_OUTPUT_CHARS, "read the full output from GET /api/v1/jobs/{job_id}")


def _capped(value: Any, max_chars: int, note: str) -> Any:
    """`value` when its JSON text has at most `max_chars` characters, else a note of its size."""
    text = json.dumps(value, default=str)
    if len(text) <= max_chars:
        return value
    return {"truncated": True, "size": len(text), "note": note}
