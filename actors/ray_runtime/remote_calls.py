"""Node work shipped away from the job actor: the call that carries one attempt (`RemoteCall`), its outcome
as data (errors included, so their type and retryability survive the trip), running it where it lands,
and a CPU node's attempt as a Ray task.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from actors.ray_runtime import ray_api
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import NodeExecutionError
from engine.failures import error_info
from engine.records import ErrorInfo, LogLevel
from engine.templating import TemplateContext
from nodes.base import LogSink, NodeContext, NodeResult, NodeType
from nodes.provider_limits import ProviderLimiter
from nodes.registry import default_registry
from nodes.services import NodeServices, TokenSink
from nodes.settings import NodeSettings

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
    step_path: tuple[str, ...] = ()

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
            child_jobs=None,
            run_node=None,
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
            step_path=self.step_path,
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
        step_path=ctx.step_path,
    )


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


def run_cpu_node(call: RemoteCall) -> RemoteOutcome:
    """The body of a Ray task for CPU nodes (user code): one attempt, in a worker process, which holds no
    provider limiter."""
    runner, worker_policy = _task_loop(), asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_ASYNCIO_POLICY)
    try:
        return runner.run(execute_here(call, call.services(llm_limiter=None, emit_token=None)))
    finally:
        _cancel_leftovers(runner.get_loop())
        asyncio.set_event_loop_policy(worker_policy)


_ASYNCIO_POLICY = asyncio.DefaultEventLoopPolicy()
"""asyncio's own policy, in force while a CPU node attempt runs: Ray's workers install uvloop's, whose
subprocess spawn forks the whole worker process (10.2 ms per spawn from a 300 MB process here, against
1.3 ms for asyncio's vfork), and a sandboxed run is a subprocess; asyncio's selector loop also needs the
policy's child watcher, which uvloop's policy lacks."""


@cache
def _task_loop() -> asyncio.Runner:
    """The event loop of this worker's CPU node attempts, asyncio's selector loop, kept from one task to
    the next."""
    return asyncio.Runner(loop_factory=asyncio.SelectorEventLoop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what an attempt left running on the kept loop, as `asyncio.run` does when it closes its own,
    so nothing of one attempt runs during the next."""
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def worker_ready() -> int:
    """A task that does nothing: running it imports this module, and with it the node types, in a worker,
    so that worker runs a CPU node's first attempt without that import (most of a second here)."""
    return os.getpid()
