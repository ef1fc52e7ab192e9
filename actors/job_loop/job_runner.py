"""Drives one job through its DAG: the loop inside a job actor, free of Ray so it is tested alone.

Every state change goes through the job's writer (job_writer.py): the scheduling step's decisions, stored as
one checkpoint with their events and log lines, then published, then acted on. Events that are
ready together are committed together (a group commit). The pure nodes a commit starts end within it (the
writer's fold runs them here, before the checkpoint), so a chain of pure nodes costs one checkpoint, and
each other node one. A run first publishes what the last run left in the outbox.

A run also ends, with the job still running, once the job is suspended (engine/waits.py): every node left
waits for a signal or a timer. Its checkpoint already holds the waits, so the runner just stops; whoever
runs the job next (on any actor) resumes it from there when a signal comes or a deadline is due. Signals
are read from the store (`signals_arrived` says when to read again) and a waiting node takes one in the
same checkpoint that completes it, so each signal is taken once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from actors.job_loop.child_maps import ChildMaps, ChildrenDue
from actors.job_loop.job_writer import JobWriter
from actors.job_loop.launcher import NodeLauncher
from actors.job_loop.node_tasks import NodeTasks, attempt_outcome
from actors.job_loop.token_events import token_emitter
from engine.backoff import equal_jitter
from engine.dag import Dag
from engine.errors import ConditionError, ConflictError
from engine.failures import error_info
from engine.ledger import JobLedger, capped, terminal_with_output
from engine.records import (
    EventType,
    JobEvent,
    JobRecord,
    JobStatus,
    LogEntry,
    LogLevel,
    NodeStatus,
    SignalRecord,
    WaitKind,
    utcnow,
)
from engine.redaction import Redactor
from engine.scheduler import (
    Action,
    Begin,
    CancelNodes,
    CancelRequested,
    Decision,
    JobState,
    NodeProgress,
    RunNode,
    SchedulerEvent,
    StepRecorded,
    WaitEnded,
    WatchWait,
)
from engine.templating import TemplateContext
from engine.waits import children_signals, is_suspended, open_waits, signals_to_take
from nodes.base import NodeContext, NodeResult
from nodes.provider_limits import ProviderLimiter
from nodes.registry import NodeRegistry
from nodes.services import ChildJobs, NodeServices
from nodes.settings import NodeSettings
from nodes.steps import StepEvent, StepJournal
from nodes.waiting import WaitArrival, WaitFinisher
from storage.protocols import EventBus, Store

logger = logging.getLogger(__name__)

MAX_RENDERED_CONFIG_CHARS = 16_384
PROGRESS_INTERVAL_S = 0.25
DEFER_S = 0.02
"""How long a batch of deferrable entries waits for one that is not (`JobRunner._next_batch`): longer
than a fast model turn, short enough that a client sees a tool's events as soon as it needs them."""


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
    jitter: Callable[[float], float] = equal_jitter
    actor_name: str | None = None
    """The actor running the job, recorded with the commit that begins its run."""
    child_jobs: ChildJobs | None = None
    """Starts the job's child jobs (workflow nodes); None where no job manager runs them."""
    llm_limiter: ProviderLimiter | None = None
    """The provider limiter of this process, for the LLM calls the job's actor makes itself (an agent's
    model turns); None: not limited (a job run on its own, in tests)."""


class JobRunner:
    """Runs one job to a terminal state, from its checkpoint; `cancel` may be called at any time."""

    def __init__(self, services: RunnerServices, job: JobRecord, dag: Dag) -> None:
        self.services = services
        self.job = job
        self.dag = dag
        self.redactor = Redactor(services.secrets)
        self._rendered_configs: dict[str, Any] = {}
        self.ledger = JobLedger(
            dag,
            JobState.restore(dag, job.status, job.nodes),
            job.id,
            job.workflow_id,
            services.clock,
            sequence=job.event_sequence,
            redactor=self.redactor,
            rendered_config=self._rendered_configs.get,
        )
        self._writer = JobWriter(
            self.ledger, services.store, services.bus, job.version, fold=self._fold_pure_nodes
        )
        self._inbox: asyncio.Queue[SchedulerEvent | ChildrenDue | None] = asyncio.Queue()
        """Events to commit, maps of children to move on; None only wakes the loop to see whether the job
        is suspended now."""
        self._child_maps = ChildMaps(services.child_jobs, services.clock)
        self._wait_timers: dict[str, asyncio.TimerHandle] = {}
        self._claimed_signals: set[str] = set()
        """Signals handed to a WaitEnded that is not committed yet."""
        self._signal_reader: asyncio.Task[None] | None = None
        self._read_signals_again = False
        self._ending = False
        self._last_progress: dict[str, float] = {}
        self._deferrable: set[int] = set()
        """By id, the inbox's entries that may wait for the next one (`_next_batch`)."""
        self._step_waiters: dict[int, asyncio.Future[None]] = {}
        """By id of a StepRecorded in the inbox: its recorder, waiting until the commit that stores it."""
        self._nodes = NodeTasks(
            dag, self._execute, self._inbox.put_nowait, services.clock, services.jitter, f"{job.id}:"
        )
        self._log_writes: set[asyncio.Task[None]] = set()
        self._outputs: dict[str, Any] = {
            node_id: node.output for node_id, node in self.state.nodes.items() if terminal_with_output(node)
        }

    @property
    def state(self) -> JobState:
        return self.ledger.state

    def cancel(self, reason: str = "cancelled by request") -> bool:
        """Ask the run to cancel the job; False when the run is ending already (the job ended or is
        suspended), so it would not see the request."""
        if self._ending:
            return False
        self._inbox.put_nowait(CancelRequested(self.services.clock(), reason))
        return True

    def signals_arrived(self) -> None:
        """A signal for this job was stored: read the job's signals again."""
        self._read_signals()

    async def run(self) -> JobStatus:
        """Run until the job ends, or until it is suspended (then the status returned is `running`)."""
        try:
            moved = self.services.actor_name if self.services.actor_name != self.job.actor_name else None
            begin = [Begin(self.services.clock()), *await self._waits_over_at_resume()]
            await self._commit(begin, self.job.pending_events, moved)
            while not self.state.status.is_terminal and not self._suspended():
                await self._commit_batch(await self._next_batch())
        except ConflictError:
            stored = await self.services.store.get_job(self.job.id)
            if not stored.status.is_terminal:
                raise
            self.state.status = stored.status
        finally:
            self._ending = True
            for timer in self._wait_timers.values():
                timer.cancel()
            if self._signal_reader is not None:
                self._signal_reader.cancel()
            await self._nodes.cancel_all()
            if self._log_writes:
                await asyncio.gather(*self._log_writes, return_exceptions=True)
        return self.state.status

    async def _next_batch(self) -> list[SchedulerEvent | ChildrenDue | None]:
        """What the inbox holds, once it holds something. A batch of deferrable entries only (a pure
        step's result, an announcement) waits up to DEFER_S for one that is not, to go with it: an
        agent's transform results and the next answer then take one commit, not two."""
        batch = [await self._inbox.get()]
        while True:
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            if not all(id(entry) in self._deferrable for entry in batch):
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), DEFER_S))
            except TimeoutError:
                break
        self._deferrable.difference_update(id(entry) for entry in batch)
        return batch

    async def _commit_batch(self, batch: list[SchedulerEvent | ChildrenDue | None]) -> None:
        """Commit the batch's events in order; a map of children moves on from the state the events before
        it left, in commits of its own."""
        events: list[SchedulerEvent] = []
        for entry in batch:
            if isinstance(entry, ChildrenDue):
                if events:
                    await self._commit(events)
                    events = []
                await self._advance_children(entry)
            elif entry is not None:
                events.append(entry)
        if events:
            await self._commit(events)

    async def _advance_children(self, due: ChildrenDue) -> None:
        ended = children_signals(self.state.nodes, due.signals)
        if due.node_id not in ended:
            return  # it no longer waits for children (cancelled, or ended by an earlier advance)
        events = await self._child_maps.advance(self.state.nodes[due.node_id], ended[due.node_id])
        if events:
            await self._commit(events)

    async def _commit(
        self,
        events: list[SchedulerEvent],
        unpublished: Sequence[JobEvent] = (),
        actor_name: str | None = None,
    ) -> None:
        was_terminal = self.state.status.is_terminal
        commit = await self._writer.commit(events, unpublished=unpublished, actor_name=actor_name)
        self._steps_stored(events)
        if commit is None:
            return
        if self.state.status.is_terminal and not was_terminal:
            logger.info("job %s %s", self.job.id, self.state.status.value, extra={"job_id": self.job.id})
        self._claimed_signals.difference_update(
            event.signal.id for event in events if isinstance(event, WaitEnded) and event.signal is not None
        )
        for action in commit.actions:
            self._perform(action)

    async def _fold_pure_nodes(self, decisions: list[Decision]) -> dict[RunNode, SchedulerEvent]:
        """The writer's fold: keep the outputs `decisions` give later templates, then run each pure node
        they start, here and now, so that it ends in the commit that starts it."""
        for decision in decisions:
            for node_id, node in decision.changes.items():
                if terminal_with_output(node):
                    self._outputs[node_id] = node.output
        runs = [
            action
            for decision in decisions
            for action in decision.actions
            if isinstance(action, RunNode)
            and self.services.registry.get(self.dag.nodes[action.node_id].type).pure
        ]
        clock = self.services.clock
        return {
            run: await attempt_outcome(self.dag, self._execute, run.node_id, run.attempt, clock)
            for run in runs
        }

    def _perform(self, action: Action) -> None:
        match action:
            case WatchWait(node_id, deadline):
                if self.state.nodes[node_id].status is not NodeStatus.WAITING:
                    return
                self._read_signals()
                if deadline is not None:
                    delay = (deadline - self.services.clock()).total_seconds()
                    if delay <= 0:
                        self._deadline_passed(node_id)
                    else:
                        loop = asyncio.get_running_loop()
                        self._wait_timers[node_id] = loop.call_later(delay, self._deadline_passed, node_id)
            case CancelNodes(node_ids):
                for node_id in node_ids:
                    timer = self._wait_timers.pop(node_id, None)
                    if timer is not None:
                        timer.cancel()
                self._nodes.perform(action)
            case _:
                self._nodes.perform(action)

    def _steps_stored(self, events: list[SchedulerEvent]) -> None:
        """The steps among `events` are stored (or dropped, their attempt over): their recorders go on."""
        for event in events:
            if isinstance(event, StepRecorded):
                waiter = self._step_waiters.pop(id(event), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    # ------------------------------------------------------------ waits

    def _suspended(self) -> bool:
        """Every node left waits, and nothing that could end a wait is under way here."""
        return (
            is_suspended(self.state.status, self.state.nodes)
            and self._inbox.empty()
            and self._signal_reader is None
        )

    async def _waits_over_at_resume(self) -> list[SchedulerEvent]:
        """For a suspended job resumed: the waits that a stored signal or a passed deadline ended, so the
        run's first commit ends them too (one commit, not two, from a signal to the next node)."""
        if not is_suspended(self.state.status, self.state.nodes):
            return []
        events: list[SchedulerEvent] = [*self._answered(await self.services.store.list_signals(self.job.id))]
        answered = {event.node_id for event in events if isinstance(event, WaitEnded)}
        now = self.services.clock()
        events.extend(
            self._wait_ended(node_id, WaitArrival(now))
            for node_id, wait in open_waits(self.state.nodes)
            if node_id not in answered and wait.deadline is not None and wait.deadline <= now
        )
        return events

    def _deadline_passed(self, node_id: str) -> None:
        self._wait_timers.pop(node_id, None)
        self._inbox.put_nowait(self._wait_ended(node_id, WaitArrival(self.services.clock())))

    def _read_signals(self) -> None:
        """Read the job's signals (once more if a read is under way) and end the waits they answer."""
        if self._signal_reader is not None:
            self._read_signals_again = True
            return
        self._signal_reader = asyncio.get_running_loop().create_task(self._take_signals())

    async def _take_signals(self) -> None:
        try:
            while True:
                self._read_signals_again = False
                signals = await self.services.store.list_signals(self.job.id)
                self._end_waits_with(signals)
                if not self._read_signals_again:
                    break
        except Exception:
            logger.exception("job %s: could not read its signals", self.job.id, extra={"job_id": self.job.id})
        finally:
            self._signal_reader = None
            self._inbox.put_nowait(None)

    def _end_waits_with(self, signals: list[SignalRecord]) -> None:
        for ended in self._answered(signals):
            self._inbox.put_nowait(ended)
        for node_id, wait in open_waits(self.state.nodes):
            if wait.kind is WaitKind.CHILDREN:
                self._inbox.put_nowait(ChildrenDue(node_id, tuple(signals)))

    def _answered(self, signals: list[SignalRecord]) -> list[WaitEnded]:
        """The waits these signals end, each signal claimed until the commit that takes it."""
        now = self.services.clock()
        ended = []
        for node_id, signal in signals_to_take(self.state.nodes, signals, self._claimed_signals):
            self._claimed_signals.add(signal.id)
            ended.append(self._wait_ended(node_id, WaitArrival(now, signal)))
        return ended

    def _wait_ended(self, node_id: str, arrival: WaitArrival) -> WaitEnded:
        """The node type's outcome of a wait, as the scheduling step's event."""
        node = self.state.nodes[node_id]
        node_type = self.services.registry.get(node.node_type)
        try:
            if node.wait is None or not isinstance(node_type, WaitFinisher):
                raise TypeError(f"node '{node_id}' ({node.node_type}) has no wait to end")
            result = node_type.finish_wait(node.wait, arrival)
        except Exception as exc:
            return WaitEnded(node_id, arrival.time, error=error_info(exc), signal=arrival.signal)
        return WaitEnded(
            node_id,
            arrival.time,
            result.output,
            result.inactive_targets,
            signal=arrival.signal,
            resume_steps=result.resume_steps,
        )

    async def _report_progress(self, node_id: str, data: dict[str, Any]) -> None:
        """Queue a progress event, at most one per PROGRESS_INTERVAL_S per node, and always the last."""
        now = asyncio.get_running_loop().time()
        final = data.get("succeeded", 0) + data.get("failed", 0) >= data.get("total", 0)
        if not final and now - self._last_progress.get(node_id, 0.0) < PROGRESS_INTERVAL_S:
            return
        self._last_progress[node_id] = now
        self._inbox.put_nowait(NodeProgress(node_id, data, self.services.clock()))

    def _journal(self, node_id: str, attempt: int) -> StepJournal:
        """The attempt's durable steps: those its checkpoint holds (an earlier run of the same attempt,
        before a crash), each new one in the inbox at once, its future done once it is stored."""
        node = self.state.nodes[node_id]
        done = node.steps if node.attempts == attempt else {}

        def record(
            key: str, value: Any, event: StepEvent | None, deferrable: bool
        ) -> asyncio.Future[None] | None:
            recorded = StepRecorded(node_id, attempt, key, value, self.services.clock(), event)
            self._inbox.put_nowait(recorded)
            if deferrable:
                self._deferrable.add(id(recorded))
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._step_waiters[id(recorded)] = waiter
            return waiter

        async def announce(event_type: EventType, data: dict[str, Any]) -> None:
            announced = NodeProgress(node_id, data, self.services.clock(), event_type)
            self._deferrable.add(id(announced))
            self._inbox.put_nowait(announced)

        return StepJournal(done, record, announce, node_id)

    # ------------------------------------------------------------ running a node

    async def _execute(self, node_id: str, attempt: int) -> NodeResult:
        spec = self.dag.nodes[node_id]
        node = self.services.registry.get(spec.type)
        scope = TemplateContext(input=self.job.input, nodes=self._outputs, secrets=self.services.secrets)
        config = node.render_config(spec.config, scope, node_id)
        self._rendered_configs[node_id] = self._shown_config(config)
        ctx = NodeContext(
            job_id=self.job.id,
            workflow_id=self.job.workflow_id,
            node_id=node_id,
            attempt=attempt,
            scope=scope,
            predecessors=self.dag.predecessors[node_id],
            services=self._node_services(node_id, attempt),
            log=self._node_log(node_id),
            steps=self._journal(node_id, attempt),
        )
        try:
            return await self.services.launcher.run(node, config, ctx)
        except ConditionError as exc:
            raise ConditionError(f"node '{node_id}' {exc.message}") from None

    def _node_services(self, node_id: str, attempt: int) -> NodeServices:
        """What the job's nodes get where the launcher runs them here: on Ray only inline nodes (an agent
        calls its model from here, with this process's provider limiter and streaming to the job's events),
        since an I/O or CPU node is shipped with the settings and gets the services of where it runs (an
        executor's limiter). The in-process launcher runs every node here."""
        return NodeServices(
            settings=self.services.node_settings,
            registry=self.services.registry,
            llm_limiter=self.services.llm_limiter,
            emit_token=token_emitter(
                self._publish_token, self.job.id, self.job.workflow_id, node_id, attempt
            ),
            fan_out=self.services.launcher.fan_out,
            progress=self._report_progress,
            dns_resolver=None,
            child_jobs=self.services.child_jobs,
            run_node=self.services.launcher.run,
        )

    async def _publish_token(self, event: JobEvent) -> None:
        await self.services.bus.publish(event)

    def _shown_config(self, config: BaseModel) -> Any:
        """A rendered config as it may be stored and shown: dumped in Python mode first, so secret fields
        stay masked (the LLM node ships its api_key whole only in JSON mode, to its executor), then every
        secret value masked, then capped in size."""
        shown = self.redactor.redact(to_jsonable_python(config.model_dump(), fallback=str))
        return capped(shown, MAX_RENDERED_CONFIG_CHARS, "the rendered config is too large to keep")

    def _node_log(self, node_id: str) -> Callable[[LogLevel, str, dict[str, Any]], None]:
        def log(level: LogLevel, message: str, data: dict[str, Any]) -> None:
            entry = LogEntry(
                job_id=self.job.id,
                level=level,
                node_id=node_id,
                message=self.redactor.redact_text(message),
                data=self.redactor.redact(data),
            )
            task = asyncio.get_running_loop().create_task(self.services.store.append_logs([entry]))
            self._log_writes.add(task)
            task.add_done_callback(self._log_writes.discard)
            task.add_done_callback(_report_log_failure)

        return log


def _report_log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("could not store a node log entry: %s", task.exception())
