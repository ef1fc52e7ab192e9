"""Every call into Ray goes through this module, so the rest of the service reads as plain Python.

Async code awaits ObjectRefs directly (Ray makes them awaitable); nothing here blocks on a
`ray.get` in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import ray
from ray.autoscaler.sdk import request_resources
from ray.exceptions import (
    GetTimeoutError,
    RayActorError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)
from ray.util import metrics as ray_metrics_api

if TYPE_CHECKING:
    from actors.ray_runtime.map_on_ray import RemoteBatch
    from actors.ray_runtime.node_executor import NodeTest
    from actors.ray_runtime.remote_calls import RemoteCall, RemoteOutcome
    from engine.records import JobRecord
    from nodes.map import ItemOutcome
    from nodes.provider_limits import LimitKey, ProviderLimits

logger = logging.getLogger(__name__)
T = TypeVar("T")

ObjectRef = ray.ObjectRef
ActorHandle = ray.actor.ActorHandle
ActorDiedError = RayActorError
RemoteTaskError = RayTaskError
CancelledRemotely = TaskCancelledError
WorkerLost = WorkerCrashedError
JOB_SLOT = "job_slot"
EXECUTOR_SLOT = "executor_slot"
"""What an executor the pool grew by for a large fan-out takes (node_executor.py); worker nodes offer it."""
MANAGER_NAME = "job-manager"
"""The job manager actor's name in the service's namespace."""
HEAD_NODE_RESOURCE = "node:__internal_head__"
_dashboard: dict[str, str | None] = {"url": None}
"""The dashboard (and its state API) of the Ray instance this process connected to, remembered for a later
`init` in the same process, so that several local Ray instances on one machine never get mixed up."""


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    dashboard_url: str | None
    started_here: bool


def is_initialized() -> bool:
    return ray.is_initialized()


def init(
    address: str | None, namespace: str, job_slots: int, include_dashboard: bool, executor_slots: int = 0
) -> ClusterInfo:
    """Connect to RAY_ADDRESS, or start a local instance that offers `job_slots` job slots and
    `executor_slots` executor slots."""
    if ray.is_initialized():
        return ClusterInfo(ray.get_runtime_context().gcs_address, _dashboard["url"], started_here=False)
    common: dict[str, Any] = {"namespace": namespace, "log_to_driver": False, "configure_logging": False}
    sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        context = ray.init(address=address, **common)
        started_here = False
    else:
        context = ray.init(
            address="local",
            resources={JOB_SLOT: job_slots, EXECUTOR_SLOT: executor_slots},
            include_dashboard=include_dashboard,
            **common,
        )
        started_here = True
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        # A local Ray node installs a SIGTERM handler that kills Ray and exits at once, which would cut
        # the server's graceful shutdown short (open streams dropped, the store not closed); the server's
        # own shutdown stops Ray instead.
        signal.signal(signal.SIGTERM, sigterm)
    _dashboard["url"] = f"http://{context.dashboard_url}" if context.dashboard_url else None
    return ClusterInfo(ray.get_runtime_context().gcs_address, _dashboard["url"], started_here)


def shutdown() -> None:
    _dashboard["url"] = None
    if ray.is_initialized():
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    return dict(ray.cluster_resources())


def available_resources() -> dict[str, float]:
    return dict(ray.available_resources())


@cache
def _remote_class(cls: type) -> Any:
    return ray.remote(cls)


def start_actor(
    cls: type,
    *args: Any,
    name: str | None,
    namespace: str,
    detached: bool = True,
    max_restarts: int = -1,
    max_concurrency: int = 1000,
    num_cpus: float = 0,
    resources: dict[str, float] | None = None,
    get_if_exists: bool = False,
    on_head: bool = False,
    spread: bool = False,
) -> ActorHandle:
    """`on_head` pins a control actor (job manager, the base executors, limiter) to the head node, which
    the autoscaler never removes; job actors go where their `job_slot` resource is; `spread` places actors
    of one kind on different nodes where it can (Ray's SPREAD strategy)."""
    options: dict[str, Any] = {
        "namespace": namespace,
        "max_restarts": max_restarts,
        "max_task_retries": -1 if max_restarts != 0 else 0,
        "max_concurrency": max_concurrency,
        "num_cpus": num_cpus,
        "get_if_exists": get_if_exists,
    }
    if name is not None:
        options["name"] = name
    if spread:
        options["scheduling_strategy"] = "SPREAD"
    if detached:
        options["lifetime"] = "detached"
    if resources or on_head:
        options["resources"] = {**(resources or {}), **({HEAD_NODE_RESOURCE: 0.001} if on_head else {})}
    return _remote_class(cls).options(**options).remote(*args)


def get_actor(name: str, namespace: str) -> ActorHandle | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def call(handle: ActorHandle, method: str, *args: Any, retry_on_restart: bool = True) -> ObjectRef:
    """Call a method of an actor that has no typed handle below (a benchmark's bare actor); with
    `retry_on_restart` the call runs again if the actor restarts."""
    bound = getattr(handle, method)
    if not retry_on_restart:
        bound = bound.options(max_task_retries=0)
    return bound.remote(*args)


async def result(ref: ObjectRef) -> Any:
    """Await a remote call; an exception raised remotely is re-raised as itself (its type, message
    and retryability), not wrapped in Ray's RayTaskError."""
    try:
        return await ref
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


@cache
def _remote_function(fn: Callable[..., Any]) -> Any:
    return ray.remote(fn)


def submit_task(
    fn: Callable[..., Any], *args: Any, name: str, num_cpus: float = 1, max_retries: int = 0
) -> ObjectRef:
    """Run `fn` as a Ray task, shown under `name` in the dashboard."""
    return _remote_function(fn).options(name=name, num_cpus=num_cpus, max_retries=max_retries).remote(*args)


async def wait_ref(ref: ObjectRef, *, force_cancel: bool, recursive: bool = True) -> Any:
    """Await a task's result; when the awaiting coroutine is cancelled, cancel the remote work too
    (`force_cancel` kills a task's worker process, which takes any sandbox process with it; `recursive`
    cancels the tasks it submitted as well, see `cancel`)."""
    try:
        return await ref
    except asyncio.CancelledError:
        cancel(ref, force=force_cancel, recursive=recursive)
        raise


def cancel(ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel a task or an actor call. Not `recursive` for a call into an async actor whose coroutine
    cancels its own tasks as it sees fit: Ray's recursive cancel would reach them first, without `force`,
    so a CPU task stopped that way leaves its worker (and a sandbox) running."""
    try:
        ray.cancel(ref, force=force, recursive=recursive)
    except (ValueError, TypeError) as exc:
        logger.debug("cancel of a finished task ignored: %s", exc)


def kill(handle: ActorHandle) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except ValueError as exc:
        logger.debug("kill of a dead actor ignored: %s", exc)


def exit_this_actor() -> None:
    """End the calling actor for good (from one of its own methods); Ray does not restart it."""
    ray.actor.exit_actor()


def request_from_autoscaler(bundles: list[dict[str, float]]) -> None:
    """Ask the cluster's autoscaler for room for `bundles` in all (replacing the last request; an empty
    list withdraws it)."""
    request_resources(bundles=bundles)


def current_actor_name() -> str | None:
    try:
        return ray.get_runtime_context().get_actor_name()
    except RuntimeError:
        return None


def named_actors(namespace: str, name_prefix: str = "") -> list[str]:
    """Names of the live named actors of a namespace, straight from the GCS (no dashboard needed)."""
    entries = ray.util.list_named_actors(all_namespaces=True)
    return [e["name"] for e in entries if e["namespace"] == namespace and e["name"].startswith(name_prefix)]


# ------------------------------------------------------------ typed handles, one per actor kind


class Pending(Generic[T]):
    """A call already sent to an actor. Awaiting it gives the method's result, a remote exception re-raised
    as itself (`result`); it may be awaited more than once."""

    def __init__(self, ref: ObjectRef) -> None:
        self._ref = ref

    def __await__(self) -> Generator[Any, None, T]:
        return result(self._ref).__await__()

    async def stopped_with_caller(self, *, force_cancel: bool) -> T:
        """The result; cancelling the awaiting coroutine cancels the remote call too (`wait_ref`), which
        then cancels the work it started itself."""
        outcome: T = await wait_ref(self._ref, force_cancel=force_cancel, recursive=False)
        return outcome


class _Handle:
    def __init__(self, raw: ActorHandle) -> None:
        self.raw = raw
        """Ray's own handle, for `kill`."""

    def _send(self, method: str, *args: Any, retry_on_restart: bool = True) -> Pending[Any]:
        return Pending(call(self.raw, method, *args, retry_on_restart=retry_on_restart))


class JobManagerHandle(_Handle):
    """The job manager actor (manager.JobManager)."""

    def start(self) -> Pending[dict[str, Any]]:
        return self._send("start")

    def submit(self, job: JobRecord) -> Pending[JobRecord]:
        return self._send("submit", job)

    def cancel(self, job_id: str) -> Pending[JobRecord]:
        return self._send("cancel", job_id, retry_on_restart=False)

    def signal(self, job_id: str) -> Pending[None]:
        return self._send("signal", job_id)

    def stats(self) -> Pending[dict[str, Any]]:
        return self._send("stats")


class JobActorHandle(_Handle):
    """A job actor (job_actor.JobActor)."""

    def prepare(self) -> Pending[dict[str, object]]:
        return self._send("prepare")

    def run_job(self, job_id: str) -> Pending[str]:
        return self._send("run_job", job_id)

    def cancel_job(self, job_id: str) -> Pending[bool]:
        return self._send("cancel_job", job_id, retry_on_restart=False)

    def wait_job(self, job_id: str) -> Pending[str]:
        return self._send("wait_job", job_id)

    def deliver_signals(self, job_id: str) -> Pending[bool]:
        return self._send("deliver_signals", job_id, retry_on_restart=False)

    def info(self, *, retry_on_restart: bool = True) -> Pending[dict[str, Any]]:
        return self._send("info", retry_on_restart=retry_on_restart)


class ScheduleKeeperHandle(_Handle):
    """The schedule keeper actor (schedule_keeper.ScheduleKeeper)."""

    def start(self) -> Pending[dict[str, Any]]:
        return self._send("start")

    def changed(self, schedule_id: str) -> Pending[None]:
        return self._send("changed", schedule_id)

    def tick(self, now: datetime) -> Pending[list[str]]:
        return self._send("tick", now, retry_on_restart=False)

    def stats(self) -> Pending[dict[str, Any]]:
        return self._send("stats")


class OutcomeStream:
    """The chunks of outcomes an executor's `execute_batch` yields, as they come."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def chunks(self) -> AsyncIterator[list[ItemOutcome]]:
        async for ref in self._stream:
            yield await result(ref)

    def cancel(self) -> None:
        cancel(self._stream)


class ExecutorHandle(_Handle):
    """A shared executor actor (node_executor.NodeExecutor)."""

    def execute(self, remote_call: RemoteCall) -> Pending[RemoteOutcome]:
        return self._send("execute", remote_call)

    def run_cpu(self, remote_call: RemoteCall, task_name: str) -> Pending[RemoteOutcome]:
        return self._send("run_cpu", remote_call, task_name)

    def warm_cpu_worker(self) -> Pending[int]:
        return self._send("warm_cpu_worker")

    def test_node(self, test: NodeTest) -> Pending[RemoteOutcome]:
        return self._send("test_node", test, retry_on_restart=False)

    def execute_batch(self, batch: RemoteBatch) -> OutcomeStream:
        return OutcomeStream(self.raw.execute_batch.options(num_returns="streaming").remote(batch))

    def ping(self) -> Pending[bool]:
        return self._send("ping")

    def retire_if_idle(self, idle_s: float) -> Pending[bool]:
        return self._send("retire_if_idle", idle_s, retry_on_restart=False)


class LimiterHandle(_Handle):
    """The cluster-wide LLM limiter actor (llm_limiter.LlmLimiterActor)."""

    def lease(
        self, client_id: str, key: LimitKey, limits: ProviderLimits, estimates: list[int], lease_s: float
    ) -> Pending[tuple[int, bool]]:
        return self._send("lease", client_id, key, limits, estimates, lease_s)

    def withdraw(self, client_id: str, key: LimitKey) -> Pending[None]:
        return self._send("withdraw", client_id, key)

    def give_back(self, client_id: str, key: LimitKey, slots: int, token_refund: int) -> Pending[bool]:
        return self._send("give_back", client_id, key, slots, token_refund)

    def stats(self) -> Pending[dict[str, Any]]:
        return self._send("stats")


__all__ = [
    "ActorDiedError",
    "ActorHandle",
    "CancelledRemotely",
    "ClusterInfo",
    "GetTimeoutError",
    "ObjectRef",
    "RemoteTaskError",
    "WorkerLost",
]


# ------------------------------------------------------------ nodes and metrics (deployment, dashboard)

MetricCounter = ray_metrics_api.Counter
MetricHistogram = ray_metrics_api.Histogram


def current_node_id() -> str | None:
    """The id (hex) of the Ray node this process runs on; None outside Ray."""
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def metric_counter(name: str, description: str, tag_keys: tuple[str, ...] = ()) -> MetricCounter:
    """A counter exported by Ray's metrics agent as `ray_<name>` (Prometheus format, dashboard Metrics)."""
    return ray_metrics_api.Counter(name, description=description, tag_keys=tag_keys)


def metric_histogram(
    name: str, description: str, boundaries: list[float], tag_keys: tuple[str, ...] = ()
) -> MetricHistogram:
    return ray_metrics_api.Histogram(name, description=description, boundaries=boundaries, tag_keys=tag_keys)
