"""Jobs that wait, from the command line: `run --url` follows a job through its waits (in a process of its
own, its progress read line by line while it follows) and `approve` and `signal` end them, against a real
gateway (conftest's `service`)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.support import REPO, CliResult, run_cli, token

LINE_TIMEOUT_S = 60.0

APPROVAL = {
    "name": "review",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "review", "type": "approval", "config": {"message": "ship {{input.title}}?"}},
        {"id": "ship", "type": "transform", "config": {"template": "shipped {{input.title}}"}},
    ],
    "edges": [{"source": "start", "target": "review"}, {"source": "review", "target": "ship"}],
}
WEBHOOK = {"name": "webhook", "nodes": [{"id": "hook", "type": "wait", "config": {"signal": "paid"}}]}


@dataclass
class Following:
    """`workflow-service run` still running: its progress (stderr) so far, read line by line."""

    process: asyncio.subprocess.Process
    progress: list[str] = field(default_factory=list)

    async def line(self, pattern: str) -> re.Match[str]:
        """Read progress until a line matches; the run must not have ended before."""
        assert self.process.stderr is not None
        while True:
            line = (await asyncio.wait_for(self.process.stderr.readline(), LINE_TIMEOUT_S)).decode()
            assert line, f"run ended before a line matched {pattern!r}:\n{''.join(self.progress)}"
            self.progress.append(line)
            if found := re.search(pattern, line.rstrip("\n")):
                return found

    async def finish(self) -> CliResult:
        out, err = await asyncio.wait_for(self.process.communicate(), LINE_TIMEOUT_S)
        assert self.process.returncode is not None
        return CliResult(self.process.returncode, out.decode(), "".join(self.progress) + err.decode())


@asynccontextmanager
async def following(tmp_path: Path, definition: dict[str, Any], *options: str) -> AsyncIterator[Following]:
    """`python -m cli run FILE --url ...` started in this worktree, yielded once it printed its job id."""
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(definition))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "run",
        str(workflow),
        *options,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Following(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def job_id_of(run: Following) -> str:
    return (await run.line(r"job (\S+) of workflow "))[1]


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_run_shows_the_approval_it_waits_for_and_follows_it_to_the_end_once_approved(
    service, tmp_path, capsys
):
    subject = f"erin-{uuid.uuid4().hex[:6]}"
    bearer = token(subject)
    user = ("--url", service, "--token", bearer)
    async with following(tmp_path, APPROVAL, "--input", '{"title": "v2"}', *user, "--timeout", "90") as run:
        job_id = await job_id_of(run)
        await run.line(r"review\s+waiting for approval: ship v2\?$")
        assert run.process.returncode is None, "a waiting job is still followed"

        approved = await run_cli(
            capsys, "approve", job_id, "review", "--comment", "go", "--data", '{"ticket": 7}', *user
        )
        assert approved.code == 0, approved.err
        answer = approved.outcome
        assert (answer["job_id"], answer["name"], answer["sender"], answer["duplicate"]) == (
            job_id,
            "review",
            subject,
            False,
        )
        await run.line(rf"review\s+signal review received from {subject}$")
        done = await run.finish()

    assert done.code == 0, done.err
    assert (done.outcome["status"], done.outcome["result"]) == ("completed", {"ship": "shipped v2"})
    assert done.err.rstrip().endswith("job completed")
    async with httpx.AsyncClient(base_url=service, headers={"Authorization": f"Bearer {bearer}"}) as http:
        decision = (await http.get(f"/api/v1/jobs/{job_id}")).json()["nodes"]["review"]["output"]
    assert (decision["approved"], decision["by"], decision["comment"], decision["data"]) == (
        True,
        subject,
        "go",
        {"ticket": 7},
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_approve_reject_fails_a_job_whose_approval_has_no_reject_edge(service, tmp_path, capsys):
    subject = f"frank-{uuid.uuid4().hex[:6]}"
    user = ("--url", service, "--token", token(subject))
    async with following(tmp_path, APPROVAL, "--input", '{"title": "v3"}', *user, "--timeout", "90") as run:
        job_id = await job_id_of(run)
        await run.line(r"waiting for approval: ship v3\?$")
        decision = ("--reject", "--comment", "not yet")
        rejected = await run_cli(capsys, "approve", job_id, "review", *decision, *user)
        assert rejected.code == 0, rejected.err
        done = await run.finish()

    assert done.code == 1, done.err
    assert done.outcome["status"] == "failed"
    assert done.outcome["error"]["message"] == f"node 'review' failed: rejected by {subject}: not yet"


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_signal_ends_a_wait_once_per_idempotency_key_and_an_ended_job_takes_none(
    service, tmp_path, capsys
):
    subject = f"gina-{uuid.uuid4().hex[:6]}"
    user = ("--url", service, "--token", token(subject))
    async with following(tmp_path, WEBHOOK, *user, "--timeout", "90") as run:
        job_id = await job_id_of(run)
        await run.line(r"hook\s+waiting for signal paid$")
        key = ("--idempotency-key", "payment-1")
        sent = await run_cli(capsys, "signal", job_id, "paid", "--data", '{"amount": 3}', *key, *user)
        again = await run_cli(capsys, "signal", job_id, "paid", "--data", '{"amount": 3}', *key, *user)
        assert (sent.code, again.code) == (0, 0), sent.err + again.err
        assert (sent.outcome["name"], sent.outcome["job_id"], sent.outcome["duplicate"]) == (
            "paid",
            job_id,
            False,
        )
        assert again.outcome["id"] == sent.outcome["id"] and again.outcome["duplicate"] is True
        await run.line(rf"hook\s+signal paid received from {subject}$")
        done = await run.finish()

    assert done.code == 0, done.err
    assert done.outcome["result"] == {"hook": {"amount": 3}}

    late = await run_cli(capsys, "signal", job_id, "paid", *user)
    assert late.code == 2 and "the service answered 409" in late.err
    unknown = await run_cli(capsys, "signal", "no-such-job", "paid", *user)
    assert unknown.code == 2 and "the service answered 404" in unknown.err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["signal", "job-1", "paid", "--data", "[1, 2]"], "--data must be a JSON object"),
        (["signal", "job-1", "paid", "--data", '"paid"'], "--data must be a JSON object"),
        (["signal", "job-1", "paid", "--data", "{amount: 3}"], "--data is not valid JSON"),
        (["signal", "job-1", "paid", "--data", "@/nonexistent/data.json"], "cannot read data file"),
        (["approve", "job-1", "review", "--data", "not json"], "--data is not valid JSON"),
    ],
)
async def test_bad_data_exits_2_before_anything_is_sent(capsys, argv, message):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = await run_cli(capsys, *argv, "--url", f"http://127.0.0.1:{closed_port}", "--token", "x")
    assert result.code == 2, result.err
    assert message in result.err, result.err
    assert result.out == ""
