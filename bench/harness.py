"""What every workload needs: a service runtime on a fresh DATA_DIR, and small statistics."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psutil

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from bench.bare_worker import BareActor
from config.settings import Settings
from engine.models import WorkflowDefinition


@asynccontextmanager
async def service(**overrides: Any) -> AsyncIterator[ServiceRuntime]:
    """A whole service runtime (embedded store and Redis, the local Ray instance) in a temporary DATA_DIR,
    with the settings `overrides` names (MODEL_SERVICE_URL=..., WARM_POOL_SIZE=...)."""
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as data_dir:
        # Flat environment names: SectionedSettings takes them as keyword arguments, which its typed
        # __init__ (the pydantic mypy plugin's) does not list.
        values: dict[str, Any] = {
            "DATA_DIR": data_dir,
            "RAY_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "RAY_DASHBOARD": "false",
            "LOG_LEVEL": "WARNING",
        }
        values.update({key: str(value) for key, value in overrides.items()})
        runtime = await start_service_runtime(Settings(_env_file=None, **values))
        try:
            yield runtime
        finally:
            await runtime.close()


SMALL_LLM_JOB: dict[str, Any] = {
    "name": "jobs500",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "shape", "type": "transform", "config": {"template": {"q": "question {{input.n}}"}}},
        {"id": "ask", "type": "llm", "config": {"model": "bench", "prompt": "{{shape.output.q}}"}},
        {"id": "end", "type": "end", "config": {"output": {"answer": "{{ask.output.text}}"}}},
    ],
    "edges": [
        {"source": "start", "target": "shape"},
        {"source": "shape", "target": "ask"},
        {"source": "ask", "target": "end"},
    ],
}
"""The small durable job of jobs500, jobs-reuse and jobs100-dedicated: start -> transform -> llm -> end."""


async def bare_worker_rss(namespace: str) -> int:
    """The RSS of a Ray actor process that imports nothing of the service: Ray's own cost of a worker."""
    handle = ray_api.start_actor(BareActor, name=None, namespace=namespace, detached=False, max_restarts=0)
    try:
        pid = await ray_api.result(ray_api.call(handle, "pid"))
        return int(psutil.Process(pid).memory_info().rss)
    finally:
        ray_api.kill(handle)


async def warm_pool_ready(runtime: ServiceRuntime, timeout_s: float = 60.0) -> None:
    """Wait until the job manager's warm pool is full again, so a run measures a warm start."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await runtime.controller.stats())["pool"] < runtime.runtime.settings.jobs.warm_pool_size:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the warm pool did not refill in {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def create_workflow(runtime: ServiceRuntime, definition: dict[str, Any], owner: str = "bench") -> str:
    workflow = await runtime.store.create_workflow(owner, WorkflowDefinition.model_validate(definition))
    return workflow.id


def chain_definition(size: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "transform", "config": {"template": {"step": i}}} for i in range(size)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": f"chain{size}", "nodes": nodes, "edges": edges}


def llm_chain_definition(size: int) -> dict[str, Any]:
    """A chain of `size` llm nodes, each a durable remote step (chain100, scale's chain curve)."""
    nodes = [
        {"id": f"n{i}", "type": "llm", "config": {"model": "bench", "prompt": f"step {i}"}}
        for i in range(size)
    ]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": f"llm-chain{size}", "nodes": nodes, "edges": edges}


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


RAY_SYSTEM = (
    "gcs_server",
    "raylet",
    "dashboard",
    "log_monitor",
    "monitor.py",
    "runtime_env",
    "RuntimeEnvAgent",
    "DashboardAgent",
)


def process_kind(process: psutil.Process, named: dict[int, str], root: int) -> str:
    """What a process is, for accounting: a named pid, a Ray actor by class (`ray::job:<id>:JobActor` and
    `ray::JobActor.run_job` are both `ray::JobActor`), one of Ray's own processes, or one the gateway
    spawned (its workers under `serve --workers N`, their validation processes)."""
    if process.pid in named:
        return named[process.pid]
    if process.pid == root:
        return "load generator"
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if command.startswith("ray::"):
        title = command.split()[0].removeprefix("ray::").split(".")[0]
        kind = f"ray::{title.rsplit(':', 1)[-1]}"
        return "ray system" if any(part in kind for part in RAY_SYSTEM) else kind
    if any(part in command for part in RAY_SYSTEM):
        return "ray system"
    if "multiprocessing" in command:
        return "gateway"
    if "redis" in command:
        return "redis"
    if "openai_server" in command:
        return "llm test server"
    return process.name()


class CpuMeter:
    """CPU seconds a process tree spends between start() and stop(), by kind of process. Sampled every
    0.5 s, so a process that ends in between keeps what it had used at its last sample."""

    def __init__(self, root_pid: int, named: dict[int, str] | None = None) -> None:
        self.root = psutil.Process(root_pid)
        self.named = named or {}
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def _read(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                seen[process.pid] = (
                    process_kind(process, self.named, self.root.pid),
                    times.user + times.system,
                )
            except psutil.Error:
                continue
        return seen

    async def _sample(self) -> None:
        while True:
            self._last.update(await asyncio.to_thread(self._read))
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._first = {pid: seconds for pid, (_, seconds) in self._read().items()}
        self._task = asyncio.ensure_future(self._sample())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._last.update(self._read())

    def by_kind(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for pid, (kind, seconds) in self._last.items():
            spent[kind] = spent.get(kind, 0.0) + seconds - self._first.get(pid, 0.0)
        return dict(sorted(spent.items(), key=lambda item: -item[1]))

    def total(self) -> float:
        return sum(self.by_kind().values())


QUIET_CPU_S = 0.15
QUIET_LIMIT_S = 30.0


async def quiet(root_pid: int, limit_s: float = QUIET_LIMIT_S) -> float:
    """Wait until a started service's process tree has settled (Ray starts and warms workers for seconds
    after it answers): under QUIET_CPU_S of CPU in one second (idle, Ray's daemons and the actors spend
    about 0.08 s a second here), at most `limit_s`; the CPU seen last."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        meter = CpuMeter(root_pid)
        meter.start()
        await asyncio.sleep(1.0)
        meter.stop()
        if meter.total() < QUIET_CPU_S or loop.time() > deadline:
            return meter.total()


JOB_ACTOR = "ray::JobActor"
RAY_OWN = ("ray system", "ray::IDLE")
"""Ray's own processes: its daemons and agents, and the idle workers it keeps started."""


class RssSampler:
    """Peak summed RSS of a process tree (the gateway and what it started: Ray, actors, Redis), less
    the LLM test server, which stands in for a provider and is no part of the service; the same
    without Ray's own processes (`service_peak`, `service_baseline`); each kind of process's own
    growth (its peak less its baseline), to say where the memory went; and `peak_beyond_workers`, the
    service's peak less, for each job actor process beyond those at the start (the warm pool's
    replacement for the actor a job took), the size of a bare Ray worker: Ray's own cost of a process,
    while what the service's modules and the job add to it count."""

    def __init__(self, root_pid: int, root_name: str = "service driver") -> None:
        self.root = psutil.Process(root_pid)
        self.root_name = root_name
        self.peak = 0
        self.baseline = 0
        self.service_baseline = 0
        self._kind_baseline: dict[str, int] = {}
        self._kind_peak: dict[str, int] = {}
        self._job_actors_at_start = 0
        self._service_and_extra_actors: list[tuple[int, int]] = []
        self._task: asyncio.Task[None] | None = None

    def by_pid(self) -> dict[int, tuple[str, int]]:
        sizes: dict[int, tuple[str, int]] = {}
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                kind = process_kind(process, {self.root.pid: self.root_name}, root=-1)
                if kind != "llm test server":
                    sizes[process.pid] = (kind, process.memory_info().rss)
            except psutil.Error:
                continue
        return sizes

    def _record(self, sizes: dict[int, tuple[str, int]]) -> None:
        rss = _by_kind(sizes)
        self.peak = max(self.peak, sum(rss.values()))
        for kind, size in rss.items():
            self._kind_peak[kind] = max(self._kind_peak.get(kind, 0), size)
        extra_actors = max(0, _job_actors(sizes) - self._job_actors_at_start)
        self._service_and_extra_actors.append((_beyond_ray(rss), extra_actors))

    @property
    def service_peak(self) -> int:
        return self.peak_beyond_workers(0)

    def peak_beyond_workers(self, ray_worker: int) -> int:
        return max(service - extra * ray_worker for service, extra in self._service_and_extra_actors)

    async def _sample(self) -> None:
        while True:
            self._record(await asyncio.to_thread(self.by_pid))
            await asyncio.sleep(0.2)

    def start(self) -> None:
        sizes = self.by_pid()
        self._job_actors_at_start = _job_actors(sizes)
        self._kind_baseline = _by_kind(sizes)
        self.baseline = sum(self._kind_baseline.values())
        self.service_baseline = _beyond_ray(self._kind_baseline)
        self._record(sizes)
        self._task = asyncio.ensure_future(self._sample())

    def growth_mb(self) -> dict[str, float]:
        """Each kind of process's peak less its baseline, in MB, largest first (0 and less left out)."""
        grown = {
            kind: round((peak - self._kind_baseline.get(kind, 0)) / 2**20, 1)
            for kind, peak in self._kind_peak.items()
        }
        return dict(sorted(((k, v) for k, v in grown.items() if v > 0), key=lambda item: -item[1]))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _job_actors(sizes: dict[int, tuple[str, int]]) -> int:
    return sum(1 for kind, _ in sizes.values() if kind == JOB_ACTOR)


def _by_kind(sizes: dict[int, tuple[str, int]]) -> dict[str, int]:
    rss: dict[str, int] = {}
    for kind, size in sizes.values():
        rss[kind] = rss.get(kind, 0) + size
    return rss


def _beyond_ray(rss: dict[str, int]) -> int:
    return sum(size for kind, size in rss.items() if kind not in RAY_OWN)
