"""The commands that talk to a running service: `run --url`, `rerun`, `signal`, `approve`, `jobs`,
`schedules` and `logs`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from cli.outcome import Outcome
from cli.progress import ProgressPrinter
from cli.service_client import ServiceClient, ServiceError
from cli.watch import follow


async def run_remote(
    client: ServiceClient,
    definition: dict[str, Any],
    input_data: dict[str, Any],
    printer: ProgressPrinter,
    timeout_s: float | None = None,
) -> Outcome:
    """Store the workflow (the service validates it), execute it and follow its events."""
    workflow = await client.create_workflow(definition)
    job = await client.execute(workflow["id"], input_data)
    printer.note(f"job {job['id']} of workflow {workflow['id']} on {client.url} (Ctrl-C cancels it)")
    return await _follow(client, job, printer, timeout_s)


async def rerun_remote(
    client: ServiceClient,
    job_id: str,
    from_nodes: list[str],
    input_data: dict[str, Any] | None,
    printer: ProgressPrinter,
    timeout_s: float | None = None,
) -> Outcome:
    """Re-run an ended job from its checkpoints (with `from_nodes` run again) and follow the new job."""
    job = await client.rerun_job(job_id, from_nodes, input_data)
    printer.note(f"job {job['id']} re-runs job {job_id} on {client.url} (Ctrl-C cancels it)")
    return await _follow(client, job, printer, timeout_s)


async def _follow(
    client: ServiceClient, job: dict[str, Any], printer: ProgressPrinter, timeout_s: float | None
) -> Outcome:
    """Follow a started job's events until it ends, cancelling it on Ctrl-C or at the timeout."""

    async def cancel() -> None:
        printer.note("cancelling the job ...")
        try:
            await client.cancel_job(job["id"])
        except ServiceError as exc:
            printer.note(f"could not cancel: {exc.message}")

    await follow(client.job_events(job["id"]), printer, cancel, timeout_s)
    return Outcome.from_json(await client.get_job(job["id"]))


async def send_signal(
    client: ServiceClient,
    job_id: str,
    name: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    out: TextIO,
) -> None:
    """Send a signal (an approval's decision is the one named after its node) and print the service's
    answer: the stored signal, `duplicate` when its Idempotency-Key had been sent before."""
    answer = await client.signal_job(job_id, name, payload, idempotency_key)
    out.write(json.dumps(answer, indent=2) + "\n")


async def show_jobs(
    client: ServiceClient, status: list[str], workflow_id: str | None, limit: int, out: TextIO
) -> None:
    page = await client.list_jobs(status, workflow_id, limit)
    rows = [
        (
            job["id"],
            job["status"],
            job["workflow_id"],
            _short_time(job["created_at"]),
            f"{job['duration_s']:.2f} s" if job.get("duration_s") is not None else "",
        )
        for job in page["items"]
    ]
    _table(("JOB", "STATUS", "WORKFLOW", "CREATED", "DURATION"), rows, out)
    out.write(f"{len(rows)} of {page['total']} jobs\n")


async def show_schedules(client: ServiceClient, limit: int, out: TextIO) -> None:
    page = await client.list_schedules(limit)
    rows = [
        (
            schedule["id"],
            schedule["workflow_id"],
            schedule["cron"],
            schedule["timezone"],
            "on" if schedule["enabled"] else "off",
            _short_time(schedule["next_fires"][0]) if schedule["next_fires"] else "",
        )
        for schedule in page["items"]
    ]
    _table(("SCHEDULE", "WORKFLOW", "CRON", "TIMEZONE", "ENABLED", "NEXT"), rows, out)
    out.write(f"{len(rows)} of {page['total']} schedules\n")


async def show_logs(client: ServiceClient, job_id: str, out: TextIO) -> None:
    for entry in await client.logs(job_id):
        node = f" [{entry['node_id']}]" if entry.get("node_id") else ""
        out.write(f"{_short_time(entry['time'])} {entry['level'].upper():<7}{node} {entry['message']}\n")


def _short_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")
