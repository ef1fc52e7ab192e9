"""The shared async executor actors: each I/O node attempt, node test and map batch is one coroutine in one
of them, with the cluster-wide LLM limiter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from actors.job_loop.token_events import token_emitter
from actors.ray_runtime import ray_api
from actors.ray_runtime.llm_limiter import ClusterLimiter
from actors.ray_runtime.map_on_ray import RemoteBatch, execute_batch_here
from actors.ray_runtime.remote_calls import (
    RemoteCall,
    RemoteOutcome,
    execute_here,
    run_as_task,
    run_cpu_attempt,
    worker_ready,
)
from actors.ray_runtime.runtime_config import RuntimeConfig
from engine.errors import ConditionError
from engine.failures import error_info
from engine.records import JobEvent, LogLevel
from engine.templating import TemplateContext
from nodes.base import Execution, NodeContext
from nodes.map import ItemOutcome
from nodes.provider_limits import ProviderLimiter
from nodes.services import NodeServices, TokenSink
from storage.protocols import EventBus


class Activity:
    """Calls running in the executor now, and when the last one ended."""

    def __init__(self) -> None:
        self._running = 0
        self._last = time.monotonic()

    def __enter__(self) -> None:
        self._running += 1

    def __exit__(self, *exc_info: object) -> None:
        self._running -= 1
        self.touch()

    def touch(self) -> None:
        self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last call ended; 0 while one runs."""
        return 0.0 if self._running else time.monotonic() - self._last


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


class NodeExecutor:
    """An async actor shared by many jobs: each I/O node attempt is one coroutine here. Its nodes get
    the cluster-wide LLM limiter (`llm_limiter`) and, when run one by one rather than as map items,
    `emit_token`, which publishes streamed LLM text as the job's `llm_token` events."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        runtime.configure_process_logging()
        self._limiter = ClusterLimiter.for_nodes(runtime.namespace, runtime.settings.nodes)
        self._bus: EventBus | None = None
        self._bus_lock = asyncio.Lock()
        self._activity = Activity()

    async def execute(self, call: RemoteCall) -> RemoteOutcome:
        with self._activity:
            return await execute_here(call, call.services(self._limiter, self._token_emitter(call)))

    async def run_cpu(self, call: RemoteCall, task_name: str) -> RemoteOutcome:
        """A job's CPU node attempt as a Ray task this actor owns (see ExecutorPool.run); cancelling this
        call force-cancels the task, its sandbox with it."""
        with self._activity:
            return await run_cpu_attempt(call, task_name)

    async def warm_cpu_worker(self) -> int:
        """Start a worker for CPU node attempts and import the node types there now, so the first code node
        after the service starts does not wait for it; the idle worker stays in Ray's pool."""
        pid: int = await ray_api.result(ray_api.submit_task(worker_ready, name="warm-up"))
        return pid

    async def test_node(self, test: NodeTest) -> RemoteOutcome:
        with self._activity:
            return await test_here(test, self.runtime, self._limiter)

    async def execute_batch(self, batch: RemoteBatch) -> AsyncIterator[list[ItemOutcome]]:
        with self._activity:
            services = batch.call.services(self._limiter, None)
            async for chunk in execute_batch_here(batch, services, self.runtime):
                yield chunk

    def _token_emitter(self, call: RemoteCall) -> TokenSink:
        """Streamed LLM text, published as the job's `llm_token` events (actors/job_loop/token_events.py)."""

        async def publish(event: JobEvent) -> None:
            await (await self._event_bus()).publish(event)

        return token_emitter(publish, call.job_id, call.workflow_id, call.node_id, call.attempt)

    async def _event_bus(self) -> EventBus:
        if self._bus is not None:
            return self._bus
        async with self._bus_lock:
            if self._bus is None:
                self._bus = await self.runtime.open_bus()
            return self._bus

    async def ping(self) -> bool:
        """Up and placed; a fan-out about to send work here pings first, which counts as activity."""
        self._activity.touch()
        return True

    async def retire_if_idle(self, idle_s: float) -> bool:
        """End this executor if nothing ran here for `idle_s` (an executor the pool grew by, so that its
        node can leave); False if it is still in use. Runs in the actor's event loop like every call, so a
        fan-out's ping either comes first (and keeps it) or finds it gone (and starts another)."""
        if self._activity.idle_for() < idle_s:
            return False
        ray_api.exit_this_actor()
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
        child_jobs=None,
        run_node=None,
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
