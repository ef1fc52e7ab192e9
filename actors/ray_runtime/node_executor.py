"""Node work that runs away from the job actor: in a shared async executor actor (I/O) or a Ray task (CPU).

Outcomes travel back as data, errors included, so their type and retryability survive the trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from actors.job_loop.map_items import bounded, chunked, run_item
from actors.ray_runtime import ray_api
from actors.ray_runtime.llm_limiter import ClusterLimiter
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import ConditionError, NodeExecutionError, StorageUnavailableError
from engine.failures import error_info
from engine.records import ErrorInfo, EventType, JobEvent, LogLevel
from engine.templating import TemplateContext
from nodes.base import Execution, LogSink, NodeContext, NodeResult, NodeType
from nodes.map import GraphChild, ItemOutcome
from nodes.provider_limits import ProviderLimiter, ProviderLimits
from nodes.registry import default_registry
from nodes.services import NodeServices, TokenSink
from nodes.settings import NodeSettings
from storage.protocols import EventBus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteCall:
    node_type: str
    config: dict[str, Any]
    job_id: str
    workflow_id: str
    node_id: str
    attempt: int
    settings: NodeSettings
    predecessors: tuple[str, ...] = ()
    node_plugins: tuple[str, ...] = ()
    outer_attempts: tuple[int, ...] = ()

    def services(self, llm_limiter: ProviderLimiter | None, emit_token: TokenSink | None) -> NodeServices:
        """What the shipped node gets where it runs: the settings and node types it was shipped with, and
        what this process offers (`llm_limiter`, `emit_token`). No fan-out: a map runs in its job's actor."""
        return NodeServices(
            settings=self.settings,
            registry=default_registry(self.node_plugins),
            llm_limiter=llm_limiter,
            emit_token=emit_token,
            fan_out=None,
            progress=None,
            dns_resolver=None,
        )

    def context(self, services: NodeServices, log: LogSink) -> NodeContext:
        """The shipped attempt's context where it runs; its config is rendered already, so no scope."""
        return NodeContext(
            job_id=self.job_id,
            workflow_id=self.workflow_id,
            node_id=self.node_id,
            attempt=self.attempt,
            scope=TemplateContext(),
            services=services,
            log=log,
            predecessors=self.predecessors,
            outer_attempts=self.outer_attempts,
        )


def remote_call(
    runtime: RuntimeConfig,
    node_type: str,
    ctx: NodeContext,
    config: dict[str, Any],
    node_id: str | None = None,
) -> RemoteCall:
    """The call shipping one attempt of `ctx`'s node (or of one item of it, `node_id`) away from the job."""
    return RemoteCall(
        node_type=node_type,
        config=config,
        job_id=ctx.job_id,
        workflow_id=ctx.workflow_id,
        node_id=node_id or ctx.node_id,
        attempt=ctx.attempt,
        predecessors=ctx.predecessors,
        node_plugins=runtime.settings.jobs.node_plugin_paths,
        settings=runtime.settings.nodes,
        outer_attempts=ctx.outer_attempts,
    )


@dataclass(frozen=True)
class NodeTest:
    """One node run outside any job (the node test route): its config still holds templates, rendered
    where it runs against `input` and `secrets`."""

    node_type: str
    config: dict[str, Any]
    input: dict[str, Any]
    secrets: Mapping[str, str]


NODE_TEST_TASKS = "node-test"
"""The name prefix of the Ray tasks that CPU nodes of node tests run as."""


@dataclass
class RemoteOutcome:
    result: NodeResult | None = None
    error: ErrorInfo | None = None
    logs: list[tuple[LogLevel, str, dict[str, Any]]] = field(default_factory=list)


class RemoteNodeError(NodeExecutionError):
    """A node's failure as reported from where it ran, keeping its error type and retryability."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.code = info.type
        self.retryable = info.retryable


async def execute_here(call: RemoteCall, services: NodeServices) -> RemoteOutcome:
    """Run one attempt in this process with `services` (`call.services(...)`); what it logs comes back
    with its outcome."""
    outcome = RemoteOutcome()
    node = services.registry.get(call.node_type)
    ctx = call.context(services, lambda level, message, data: outcome.logs.append((level, message, data)))
    try:
        outcome.result = await node.execute(node.parse_config(call.config, call.node_id), ctx)
    except Exception as exc:
        outcome.error = error_info(exc)
    return outcome


@dataclass(frozen=True)
class RemoteBatch:
    """Many items of one map node for one executor: configs of its child type (`call.node_type`), or
    `{"item": ...}` for its sub-graph (`graph`), whose CPU nodes become Ray tasks named
    `<task_prefix>:<node>`."""

    call: RemoteCall
    items: list[tuple[int, dict[str, Any]]]
    max_concurrency: int
    fail_fast: bool
    graph: GraphChild | None = None
    task_prefix: str = ""


WORKER_LOSS_RESUBMITS = 1
"""How many times an attempt whose Ray worker died under it is run again on another worker."""


async def run_cpu_attempt(call: RemoteCall, task_name: str) -> RemoteOutcome:
    """One attempt of a CPU node as a Ray task, force-cancelled with the awaiting coroutine, and run
    again on another worker if its worker dies under it.

    Ray's force-cancel kills the cancelled task's child processes (its sandbox) before the worker exits.
    In between, the task sees its sandbox gone and returns, the owner counts the worker as free and
    pushes it the next queued task of the same kind (a retry, a map item, or another job's node in reuse
    mode), which then dies with the worker: WorkerCrashedError for a task nobody cancelled. Its node never
    ran to an end and a node attempt may run again (same attempt, same idempotency key), so the attempt
    is submitted again instead of failing; the node's timeout still bounds it as a whole."""
    resubmits_left = WORKER_LOSS_RESUBMITS
    while True:
        ref = ray_api.submit_task(run_cpu_node, call, name=task_name)
        try:
            outcome: RemoteOutcome = await ray_api.wait_ref(ref, force_cancel=True)
            return outcome
        except ray_api.WorkerLost as lost:
            if resubmits_left == 0:
                raise
            resubmits_left -= 1
            logger.warning(
                "the worker running %s (job %s, attempt %d) died under it; running it on another: %s",
                task_name,
                call.job_id,
                call.attempt,
                lost,
                extra={"job_id": call.job_id},
            )


async def run_as_task(
    runtime: RuntimeConfig, task_prefix: str, node: NodeType[Any], config: BaseModel, ctx: NodeContext
) -> NodeResult:
    """One attempt of a CPU node as a Ray task named `<task_prefix>:<node id>` (see run_cpu_attempt)."""
    call = remote_call(runtime, node.type_name, ctx, config.model_dump(mode="json"))
    return outcome_result(await run_cpu_attempt(call, f"{task_prefix}:{ctx.node_id}"), ctx)


def outcome_result(outcome: RemoteOutcome, ctx: NodeContext) -> NodeResult:
    """A remote attempt's result, its logs replayed into `ctx`'s; its failure raised with type kept."""
    for level, message, data in outcome.logs:
        ctx.log(level, message, data)
    if outcome.error is not None:
        raise RemoteNodeError(outcome.error)
    assert outcome.result is not None
    return outcome.result


async def execute_batch_here(
    batch: RemoteBatch, services: NodeServices, runtime: RuntimeConfig | None = None
) -> AsyncIterator[list[ItemOutcome]]:
    """Run a batch as coroutines under its concurrency bound, yielding outcomes in chunks as they finish;
    each item's log lines come back with its outcome. A sub-graph's CPU nodes need `runtime` to be sent
    out as Ray tasks."""
    call = batch.call
    child = batch.graph or services.registry.get(call.node_type)

    async def launch(node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is not Execution.CPU:
            return await node.execute(config, ctx)
        if runtime is None:
            raise NodeExecutionError(f"node '{ctx.node_id}' needs a core of its own, which only Ray gives")
        return await run_as_task(runtime, batch.task_prefix, node, config, ctx)

    async def logged_item(index: int, config: dict[str, Any]) -> ItemOutcome:
        logs: list[tuple[LogLevel, str, dict[str, Any]]] = []
        ctx = call.context(services, lambda level, message, data: logs.append((level, message, data)))
        outcome = await run_item(child, config, ctx.for_item(index), index, launch)
        return replace(outcome, logs=tuple(logs)) if logs else outcome

    jobs = [(lambda i=index, c=config: logged_item(i, c)) for index, config in batch.items]
    async for chunk in chunked(bounded(jobs, batch.max_concurrency, batch.fail_fast)):
        yield chunk


class NodeExecutor:
    """An async actor shared by many jobs: each I/O node attempt is one coroutine here. Its nodes get
    the cluster-wide LLM limiter (`llm_limiter`) and, when run one by one rather than as map items,
    `emit_token`, which publishes streamed LLM text as the job's `llm_token` events."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        runtime.configure_process_logging()
        settings = runtime.settings.nodes
        self._limiter = ClusterLimiter(
            runtime.namespace, ProviderLimits.from_settings(settings), hold_s=settings.llm_request_timeout_s
        )
        self._bus: EventBus | None = None
        self._bus_lock = asyncio.Lock()

    async def execute(self, call: RemoteCall) -> RemoteOutcome:
        return await execute_here(call, call.services(self._limiter, self._token_emitter(call)))

    async def test_node(self, test: NodeTest) -> RemoteOutcome:
        return await test_here(test, self.runtime, self._limiter)

    async def execute_batch(self, batch: RemoteBatch) -> AsyncIterator[list[ItemOutcome]]:
        async for chunk in execute_batch_here(batch, batch.call.services(self._limiter, None), self.runtime):
            yield chunk

    def _token_emitter(self, call: RemoteCall) -> TokenSink:
        """Streamed LLM text, published straight to the event bus as `llm_token` events (sequence 0).

        Tokens are best-effort live output, not durable state: they bypass the job's checkpoint and
        event numbering, a replay may lack some, and one that cannot be published is dropped with a
        warning. The node's output, checkpointed as usual, holds the whole text."""
        index = 0

        async def emit(text: str) -> None:
            nonlocal index
            event = JobEvent(
                sequence=0,
                type=EventType.LLM_TOKEN,
                job_id=call.job_id,
                workflow_id=call.workflow_id,
                node_id=call.node_id,
                data={"index": index, "text": text, "attempt": call.attempt},
            )
            index += 1
            try:
                await (await self._event_bus()).publish(event)
            except StorageUnavailableError as exc:
                logger.warning("dropped an llm_token event of job %s: %s", call.job_id, exc)

        return emit

    async def _event_bus(self) -> EventBus:
        if self._bus is not None:
            return self._bus
        async with self._bus_lock:
            if self._bus is None:
                self._bus = await self.runtime.open_bus()
            return self._bus

    async def ping(self) -> bool:
        return True


async def test_here(
    test: NodeTest, runtime: RuntimeConfig, llm_limiter: ProviderLimiter | None
) -> RemoteOutcome:
    """A node test in this process: the config rendered here (so no template is evaluated where the
    request arrived), then the node run as a job runs it, a CPU node as a Ray task. It belongs to no job,
    so there is nothing to fan a map out with, and what it logs is dropped (the route returns the output)."""
    outcome = RemoteOutcome()
    node_id = test.node_type
    services = NodeServices(
        settings=runtime.settings.nodes,
        registry=runtime.registry(),
        llm_limiter=llm_limiter,
        emit_token=None,
        fan_out=None,
        progress=None,
        dns_resolver=None,
    )
    try:
        node = services.registry.get(test.node_type)
        scope = TemplateContext(input=test.input, secrets=test.secrets)
        parsed = node.render_config(test.config, scope, node_id)
        ctx = NodeContext(
            job_id="test",
            workflow_id="test",
            node_id=node_id,
            attempt=1,
            scope=scope,
            services=services,
            log=_dropped,
        )
        if node.execution is Execution.CPU:
            outcome.result = await run_as_task(runtime, NODE_TEST_TASKS, node, parsed, ctx)
        else:
            outcome.result = await node.execute(parsed, ctx)
    except ConditionError as exc:
        outcome.error = error_info(ConditionError(f"node '{node_id}' {exc.message}"))
    except Exception as exc:
        outcome.error = error_info(exc)
    return outcome


def _dropped(level: LogLevel, message: str, data: dict[str, Any]) -> None:
    """The log of a node test, which no job keeps."""


def run_cpu_node(call: RemoteCall) -> RemoteOutcome:
    """The body of a Ray task for CPU nodes (user code): one attempt, in a worker process, which holds no
    provider limiter."""
    return asyncio.run(execute_here(call, call.services(llm_limiter=None, emit_token=None)))
