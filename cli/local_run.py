"""`workflow-service run FILE` without `--url`: the whole service in this process, for one job.

It runs on the embedded defaults whatever the environment configures for `serve`: a SQLite file and an
embedded Redis in a temporary directory (or `--data-dir`), and a local Ray instance of its own under a
namespace of its own, so it never meets a running service's job manager. Everything else comes from
the environment as for `serve`: node settings (MODEL_SERVICE_URL, HTTP_ALLOW_PRIVATE_NETWORKS, the
sandbox limits), SECRETS_FILE, NODE_PLUGINS, the pool sizes. No dashboard and no warm pool: the process
ends with the job. To watch a job in the Ray dashboard, run it against `serve` with `--url`.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime, start_service_runtime
from cli.outcome import Outcome
from cli.progress import ProgressPrinter
from cli.watch import follow
from config.settings import Settings
from engine.errors import WorkflowServiceError
from engine.models import WorkflowDefinition
from engine.secret_access import ADMIN_ROLE
from gateway.streams import follow_job

CLI_OWNER = "cli"
"""Runs as an admin: whoever runs the service in their own process is its operator, and may use every
SECRETS_FILE entry."""
IDLE_CHECK_S = 2.0


@contextlib.contextmanager
def _data_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="workflow-run-") as directory:
        yield Path(directory)


def embedded_settings(settings: Settings, data_dir: Path) -> Settings:
    return settings.with_values(
        DATA_DIR=data_dir,
        MONGODB_URL=None,
        REDIS_HOST=None,
        RAY_ADDRESS=None,
        RAY_DASHBOARD=False,
        RAY_NAMESPACE=f"workflow-run-{uuid.uuid4().hex[:12]}",
        WARM_POOL_SIZE=0,
    )


async def run_in_process(
    definition: WorkflowDefinition,
    input_data: dict[str, Any],
    settings: Settings,
    data_dir: Path | None,
    printer: ProgressPrinter,
    timeout_s: float | None = None,
) -> Outcome:
    with _data_dir(data_dir) as directory:
        runtime = await start_service_runtime(embedded_settings(settings, directory))
        try:
            return await _run(runtime, definition, input_data, printer, timeout_s)
        finally:
            if not runtime.cluster.started_here:
                _end_namespace_actors(runtime.runtime.namespace)
            await runtime.close()


async def _run(
    runtime: ServiceRuntime,
    definition: WorkflowDefinition,
    input_data: dict[str, Any],
    printer: ProgressPrinter,
    timeout_s: float | None,
) -> Outcome:
    workflow = await runtime.store.create_workflow(CLI_OWNER, definition)
    job = await runtime.controller.execute_workflow(
        workflow.id, input_data, owner=CLI_OWNER, owner_roles=[ADMIN_ROLE]
    )
    printer.note(f"job {job.id} of workflow '{definition.name}' (Ctrl-C cancels it)")

    async def cancel() -> None:
        printer.note("cancelling the job ...")
        try:
            await runtime.controller.cancel_job(job.id)
        except WorkflowServiceError as exc:
            printer.note(f"could not cancel: {exc.message}")

    await follow(
        follow_job(runtime.bus, runtime.store, job.id, None, IDLE_CHECK_S), printer, cancel, timeout_s
    )
    return Outcome.from_record(await runtime.store.get_job(job.id))


def _end_namespace_actors(namespace: str) -> None:
    """Where Ray was already running in this process, end the run's job manager and executors (they
    are detached) so the run leaves nothing behind, as it does when its own Ray instance stops."""
    for name in ray_api.named_actors(namespace):
        handle = ray_api.get_actor(name, namespace)
        if handle is not None:
            ray_api.kill(handle)
