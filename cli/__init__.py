"""`workflow-service`: the service's command line.

    workflow-service serve [--workers N]       the gateway (embedded store, Redis and Ray by default)
    workflow-service run FILE [--input JSON]   run a workflow here: live progress, then the result
    workflow-service run FILE --url URL        ... on a running service instead
    workflow-service rerun JOB [--from NODE]   re-run an ended job on a running service from its checkpoints
    workflow-service signal JOB NAME           send a job a signal its wait node waits for (--data JSON)
    workflow-service approve JOB NODE          approve a job's waiting approval node (or --reject)
    workflow-service validate FILE             every problem of a workflow file
    workflow-service jobs | logs JOB           read from a running service
    workflow-service token --sub USER          a bearer token signed with the service's key

Progress goes to stderr and the result, one JSON object, to stdout. Exit codes: 0 the job completed
(for signal and approve: the service took the signal), 1 it failed or was cancelled (or the service could
not be reached), 2 the input was invalid (or the service refused it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.gateway_server import base_url
from cli.inputs import (
    EXIT_FAILED,
    EXIT_INVALID,
    CliInputError,
    load_workflow_file,
    parse_input,
    parse_json_option,
)
from cli.local_run import run_in_process
from cli.progress import ProgressPrinter
from cli.remote import rerun_remote, run_remote, send_signal, show_jobs, show_logs, show_schedules
from cli.serve import serve
from cli.service_client import ServiceClient, ServiceError
from cli.token import DEFAULT_TTL, TokenCommandError, duration_seconds, mint_token
from cli.validate import checked_definition, validate_file, write_problems
from config.local_keys import MissingKeyError
from config.settings import Settings
from engine.errors import InvalidWorkflowError, WorkflowServiceError
from engine.records import JobStatus

URL_ENV = "WORKFLOW_SERVICE_URL"
TOKEN_ENV = "WORKFLOW_SERVICE_TOKEN"
DEFAULT_URL = "http://localhost:8001"

__all__ = ["base_url", "main"]


def _service_options(parser: argparse.ArgumentParser, *, url_required_for: str | None = None) -> None:
    help_url = (
        f"the service's base URL (default: ${URL_ENV}, else {DEFAULT_URL})"
        if url_required_for is None
        else url_required_for
    )
    parser.add_argument("--url", help=help_url)
    parser.add_argument("--token", help=f"a bearer token for the service (default: ${TOKEN_ENV})")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of processes") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workflow-service", description="The workflow execution service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    serve_cmd = commands.add_parser(
        "serve", help="run the API gateway (with the embedded store, Redis and Ray unless configured)"
    )
    serve_cmd.add_argument("--host", help="address to listen on (default: HOST, 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default: PORT, 8001)")
    serve_cmd.add_argument(
        "--workers",
        type=_worker_count,
        help="gateway processes serving the port, each a Ray driver of the one cluster (default: one per "
        "core)",
    )

    run = commands.add_parser(
        "run", help="run a workflow file and show its progress live, then its result as JSON"
    )
    run.add_argument("file", type=Path, help="a workflow definition (JSON)")
    run.add_argument("--input", help="the job's input: a JSON object, or @FILE holding one")
    _service_options(
        run, url_required_for="run on the service at this URL; without it the job runs in this process"
    )
    run.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="cancel the job if it has not ended by then"
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        help="in-process only: where the embedded store and Redis keep their files (default: a temporary "
        "directory, removed afterwards)",
    )

    rerun = commands.add_parser(
        "rerun", help="re-run an ended job on a running service: what it completed is kept, the rest runs"
    )
    rerun.add_argument("job_id", metavar="JOB", help="the ended job's id")
    rerun.add_argument(
        "--from",
        dest="from_nodes",
        action="append",
        default=[],
        metavar="NODE",
        help="run this node and everything after it again too (repeatable)",
    )
    rerun.add_argument("--input", help="a new input (then every node runs): a JSON object, or @FILE")
    _service_options(rerun)
    rerun.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="cancel the job if it has not ended by then"
    )

    signal = commands.add_parser(
        "signal", help="send a signal to a job on a running service (a wait node waits for it by name)"
    )
    signal.add_argument("job_id", metavar="JOB", help="the job's id")
    signal.add_argument("name", metavar="NAME", help="the signal's name")
    signal.add_argument(
        "--data",
        metavar="JSON",
        help="the signal's payload: a JSON object, or @FILE holding one (default {})",
    )
    signal.add_argument(
        "--idempotency-key", metavar="KEY", help="a signal sent again with the same key is delivered once"
    )
    _service_options(signal)

    approve = commands.add_parser(
        "approve", help="approve (or --reject) a job's waiting approval node on a running service"
    )
    approve.add_argument("job_id", metavar="JOB", help="the job's id")
    approve.add_argument("node", metavar="NODE", help="the approval node's id")
    approve.add_argument("--reject", action="store_true", help="reject instead of approving")
    approve.add_argument("--comment", metavar="TEXT", help="why, for the job's record")
    approve.add_argument(
        "--data", metavar="JSON", help="anything to send along (the node's output `data`): JSON, or @FILE"
    )
    _service_options(approve)

    validate = commands.add_parser("validate", help="list every problem of a workflow file (exit 2 if any)")
    validate.add_argument("file", type=Path, help="a workflow definition (JSON)")

    jobs = commands.add_parser("jobs", help="list a running service's jobs, newest first")
    _service_options(jobs)
    jobs.add_argument(
        "--status", action="append", default=[], choices=[s.value for s in JobStatus], help="repeatable"
    )
    jobs.add_argument("--workflow", help="only this workflow's jobs")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 500)")

    schedules = commands.add_parser("schedules", help="list a running service's schedules, newest first")
    _service_options(schedules)
    schedules.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 500)")

    logs = commands.add_parser("logs", help="print a job's log from a running service")
    logs.add_argument("job_id", metavar="JOB", help="the job's id")
    _service_options(logs)

    token = commands.add_parser(
        "token",
        help="print a bearer token signed with the service's key (JWT_SECRET, or the embedded mode's "
        "DATA_DIR/jwt-secret)",
    )
    token.add_argument("--sub", required=True, help="the user the token is for (its owner of workflows)")
    token.add_argument("--admin", action="store_true", help="with the admin role: sees everyone's data")
    token.add_argument(
        "--ttl",
        type=duration_seconds,
        default=duration_seconds(DEFAULT_TTL),
        metavar="DURATION",
        help=f"how long it is valid: 90s, 15m, 1h, 7d (default {DEFAULT_TTL})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.host, args.port, args.workers)
    try:
        if args.command == "token":
            print(mint_token(Settings(), args.sub, admin=args.admin, ttl_s=args.ttl))
            return 0
        if args.command == "validate":
            return validate_file(args.file, Settings(), sys.stdout)
        return asyncio.run(_command(args))
    except (CliInputError, MissingKeyError, TokenCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidWorkflowError as exc:
        write_problems(args.file, exc, sys.stderr)
        return EXIT_INVALID
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_INVALID if exc.is_client_error else EXIT_FAILED
    except WorkflowServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


async def _command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return await _run(args)
    if args.command == "rerun":
        return await _rerun(args)
    if args.command in ("signal", "approve"):
        return await _signal(args)
    async with _client(args) as client:
        if args.command == "jobs":
            await show_jobs(client, args.status, args.workflow, args.limit, sys.stdout)
        elif args.command == "schedules":
            await show_schedules(client, args.limit, sys.stdout)
        else:
            await show_logs(client, args.job_id, sys.stdout)
    return 0


async def _run(args: argparse.Namespace) -> int:
    input_data = parse_input(args.input)
    if args.url:
        raw = load_workflow_file(args.file)
        printer = ProgressPrinter(sys.stderr, [str(node.get("id", "")) for node in raw.get("nodes", [])])
        async with _client(args) as client:
            outcome = await run_remote(client, raw, input_data, printer, args.timeout)
    else:
        settings = Settings()
        definition = checked_definition(args.file, settings)
        node_ids = [node.id for node in definition.nodes]
        printer = ProgressPrinter(sys.stderr, node_ids, signals_reach_it=False)
        # stdout carries the outcome only: a Ray driver prints the cluster's task errors ("(raylet) Task
        # ... failed") to stdout from a thread of its own, which would break `run ... | jq`.
        with contextlib.redirect_stdout(sys.stderr):
            outcome = await run_in_process(
                definition, input_data, settings, args.data_dir, printer, args.timeout
            )
    outcome.write(sys.stdout)
    return outcome.exit_code


async def _rerun(args: argparse.Namespace) -> int:
    input_data = parse_input(args.input) if args.input is not None else None
    async with _client(args) as client:
        old = await client.get_job(args.job_id)
        printer = ProgressPrinter(sys.stderr, old["nodes"])
        outcome = await rerun_remote(client, args.job_id, args.from_nodes, input_data, printer, args.timeout)
    outcome.write(sys.stdout)
    return outcome.exit_code


async def _signal(args: argparse.Namespace) -> int:
    """`signal` sends its payload as given; `approve` the decision an approval node takes, as the signal
    named after the node."""
    if args.command == "approve":
        data = parse_json_option(args.data, "--data") if args.data is not None else None
        name, key = args.node, None
        payload = {"approved": not args.reject, "comment": args.comment, "data": data}
    else:
        name, key, payload = args.name, args.idempotency_key, parse_input(args.data, "--data")
    async with _client(args) as client:
        await send_signal(client, args.job_id, name, payload, key, sys.stdout)
    return 0


def _client(args: argparse.Namespace) -> ServiceClient:
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    return ServiceClient(url, args.token or os.environ.get(TOKEN_ENV))
