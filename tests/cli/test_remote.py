"""`run --url`, `rerun`, `jobs`, `schedules` and `logs` against a real gateway (conftest's `service`) over
loopback HTTP (REST and SSE), on the session's Ray, the embedded SQLite store and the embedded Redis."""

from __future__ import annotations

import json
import re
import socket
import uuid

import httpx
import pytest

from tests.cli.support import EXAMPLES, run_cli, token

pytestmark = pytest.mark.slow

DOCUMENTS = [f"note {i}" for i in range(10)]
NOTHING = {"id": "start", "type": "start", "config": {}}


@pytest.mark.timeout(120)
async def test_run_on_a_service_follows_its_events_then_jobs_and_logs_show_the_job(
    service, tmp_path, capsys, monkeypatch
):
    alice = token(f"alice-{uuid.uuid4().hex[:6]}")
    given = tmp_path / "documents.json"
    given.write_text(json.dumps({"documents": DOCUMENTS}))
    run = await run_cli(
        capsys,
        "run",
        str(EXAMPLES / "fan-out.json"),
        "--input",
        f"@{given}",
        "--url",
        service,
        "--token",
        alice,
        "--timeout",
        "60",
    )
    assert run.code == 0, run.err
    job_id = run.outcome["job_id"]
    summaries = run.outcome["result"]["summaries"]
    assert [s["text"] for s in summaries] == [
        f"echo: Summarize document {i} in one sentence: {doc}" for i, doc in enumerate(DOCUMENTS)
    ]
    assert f"job {job_id} of workflow" in run.err and f"on {service}" in run.err
    assert re.search(r"summarize\s+\[#+\]\s+10/10", run.err), "the map's progress arrived over SSE"
    assert run.err.rstrip().endswith("job completed")

    monkeypatch.setenv("WORKFLOW_SERVICE_TOKEN", alice)
    monkeypatch.setenv("WORKFLOW_SERVICE_URL", service)
    jobs = await run_cli(capsys, "jobs")
    assert jobs.code == 0, jobs.err
    header, row, *_ = jobs.out.splitlines()
    assert header.split() == ["JOB", "STATUS", "WORKFLOW", "CREATED", "DURATION"]
    assert row.split()[:2] == [job_id, "completed"]
    assert jobs.out.splitlines()[-1] == "1 of 1 jobs"
    assert (await run_cli(capsys, "jobs", "--status", "failed")).out.splitlines()[-1] == "0 of 0 jobs"

    logs = await run_cli(capsys, "logs", job_id)
    assert logs.code == 0, logs.err
    lines = logs.out.splitlines()
    assert re.search(r"INFO\s+job: started", lines[0]), lines[0]
    assert any(re.search(r"\[summarize\] node summarize: completed", line) for line in lines), logs.out
    assert re.search(r"job: completed", lines[-1]), lines[-1]


@pytest.mark.timeout(60)
async def test_the_service_refusing_the_workflow_or_the_token_exits_2(service, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"name": "broken", "nodes": [{"id": "a", "type": "teleport"}]}))
    refused = await run_cli(capsys, "run", str(broken), "--url", service, "--token", token("bob"))
    assert refused.code == 2
    assert "the service answered 422" in refused.err
    assert "a.type: unknown node type 'teleport'" in refused.err

    forged = token("mallory", secret="not-the-service-secret-0123456789ab")
    unauthorized = await run_cli(capsys, "jobs", "--url", service, "--token", forged)
    assert unauthorized.code == 2
    assert "the service answered 401" in unauthorized.err


@pytest.mark.timeout(120)
async def test_rerun_follows_a_new_job_from_the_failed_ones_checkpoints(service, tmp_path, capsys):
    greeting = tmp_path / "greeting.json"
    greeting.write_text(
        json.dumps(
            {
                "name": "greeting",
                "nodes": [
                    {"id": "start", "type": "start"},
                    {"id": "greet", "type": "transform", "config": {"template": "Hello {{input.name}}"}},
                ],
                "edges": [{"source": "start", "target": "greet"}],
            }
        )
    )
    user = ("--url", service, "--token", token(f"dana-{uuid.uuid4().hex[:6]}"))
    failed = await run_cli(capsys, "run", str(greeting), *user)
    assert failed.code == 1, failed.err
    job_id = failed.outcome["job_id"]

    fixed = await run_cli(capsys, "rerun", job_id, "--input", '{"name": "Ada"}', *user)
    assert fixed.code == 0, fixed.err
    assert (fixed.outcome["status"], fixed.outcome["result"]) == ("completed", {"greet": "Hello Ada"})
    assert f"re-runs job {job_id}" in fixed.err and fixed.outcome["job_id"] != job_id

    unknown = await run_cli(capsys, "rerun", job_id, "--from", "greet", "--from", "nope", *user)
    assert unknown.code == 2
    assert "nope.from_nodes[1]: the workflow version has no node 'nope'" in unknown.err


@pytest.mark.timeout(60)
async def test_an_unreachable_service_exits_1(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = await run_cli(capsys, "jobs", "--url", f"http://127.0.0.1:{closed_port}", "--token", "x")
    assert result.code == 1
    assert "cannot reach the service" in result.err


@pytest.mark.timeout(60)
async def test_schedules_lists_the_callers_schedules(service, capsys):
    alice, bob = token(f"alice-{uuid.uuid4().hex[:6]}"), token(f"bob-{uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {alice}"}
    async with httpx.AsyncClient(base_url=service, headers=headers) as http:
        workflow = (await http.post("/api/v1/workflows", json={"name": "nightly", "nodes": [NOTHING]})).json()
        body = {"cron": "0 3 1 1 *", "timezone": "Europe/Berlin"}
        created = await http.post(f"/api/v1/workflows/{workflow['id']}/schedules", json=body)
        assert created.status_code == 201, created.text
    listed = await run_cli(capsys, "schedules", "--url", service, "--token", alice)
    assert listed.code == 0, listed.err
    header, row, last = listed.out.splitlines()
    assert header.split() == ["SCHEDULE", "WORKFLOW", "CRON", "TIMEZONE", "ENABLED", "NEXT"]
    assert row.split()[:7] == [created.json()["id"], workflow["id"], "0", "3", "1", "1", "*"]
    assert row.split()[7:9] == ["Europe/Berlin", "on"] and last == "1 of 1 schedules"
    others = await run_cli(capsys, "schedules", "--url", service, "--token", bob)
    assert others.out.splitlines()[-1] == "0 of 0 schedules"
