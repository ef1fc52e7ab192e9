"""The job runtime on a real local Ray: job actors, remote node work, recovery, cancellation, admission."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from actors.ray_runtime import ray_api
from actors.ray_runtime.bootstrap import ServiceRuntime
from engine.models import WorkflowDefinition
from engine.records import JobRecord, JobStatus, NodeStatus
from storage.sqlite_store import SqliteStore
from storage.store_factory import SQLITE_FILE_NAME
from tests.support import ray_test_api
from tests.support.nesting import nested
from tests.support.ray_jobs import (
    chain,
    execute,
    finished,
    record,
    restart_manager,
    service_phase,
    wait_for,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def ledger_lines(ledger: Path) -> list[list[str]]:
    return [line.split() for line in ledger.read_text().splitlines()] if ledger.exists() else []


def job_actor_names(runtime: ServiceRuntime) -> set[str]:
    names = ray_api.named_actors(runtime.runtime.namespace)
    return {name for name in names if name.startswith(("job:", "job-runner:"))}


@pytest.mark.timeout(120)
async def test_named_actor_parallel_branches_and_named_cpu_tasks(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="dedicated")
    ledger = tmp_path / "ledger"
    nodes = [
        {"id": "start", "type": "start"},
        record("io", ledger, seconds=4.0),
        record("cpu", ledger, "record_cpu", seconds=4.0),
        {"id": "end", "type": "end"},
    ]
    job = await execute(
        runtime,
        nodes,
        [("start", "io"), ("start", "cpu"), ("io", "end"), ("cpu", "end")],
        name="parallel-demo",
    )
    running = await wait_for(
        runtime,
        job.id,
        lambda j: j.nodes.get("cpu") is not None and j.nodes["cpu"].status is NodeStatus.RUNNING,
    )
    assert running.actor_name == f"job:{job.id}"
    listed = {
        a["name"] for a in ray_test_api.list_actors(runtime.cluster.dashboard_url, runtime.runtime.namespace)
    }
    assert f"job:{job.id}" in listed, "the dashboard's state API lists the job's actor under its name"
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    assert set(done.result) == {"io", "cpu"}
    lines = ledger_lines(ledger)
    times = {(line[1], line[3]): float(line[5]) for line in lines}
    assert times[("io", "start")] < times[("cpu", "done")] and times[("cpu", "start")] < times[("io", "done")]
    tasks = [
        t
        for t in ray_test_api.list_tasks(runtime.cluster.dashboard_url, "parallel-demo:")
        if t["name"] == "parallel-demo:cpu"
    ]
    assert tasks, "the CPU node ran as a Ray task named after the workflow and node"
    by_id = {t["task_id"]: t for t in ray_test_api.list_tasks(runtime.cluster.dashboard_url)}
    owners = {by_id[t["parent_task_id"]]["name"] for t in tasks if t.get("parent_task_id") in by_id}
    assert owners and all(owner.startswith("node-executor-") for owner in owners), (
        "an executor, which outlives the job's actor, submits the task, so its worker stays warm"
    )
    await wait_until(lambda: f"job:{job.id}" not in job_actor_names(runtime))
    assert f"job:{job.id}" not in job_actor_names(runtime), "a dedicated actor ends with its job"


@pytest.mark.timeout(120)
async def test_kill_9_of_the_job_actor_resumes_and_never_reruns_completed_nodes(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="dedicated")
    ledger = tmp_path / "ledger"
    ids = ["n1", "n2", "n3", "n4", "n5"]
    job = await execute(runtime, [record(n, ledger, seconds=0.6) for n in ids], chain(*ids))
    await wait_for(
        runtime,
        job.id,
        lambda j: j.nodes.get("n3") is not None and j.nodes["n3"].status is NodeStatus.RUNNING,
    )
    handle = ray_api.get_actor(f"job:{job.id}", runtime.runtime.namespace)
    assert handle is not None
    info = await ray_api.JobActorHandle(handle).info()
    before_kill = await runtime.controller.get_job_status(job.id)
    os.kill(int(info["pid"]), signal.SIGKILL)

    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    completed_before = [n for n, c in before_kill.nodes.items() if c.status is NodeStatus.COMPLETED]
    assert completed_before == ["n1", "n2"]
    starts = [line[1] for line in ledger_lines(ledger) if line[3] == "start"]
    for node_id in completed_before:
        assert starts.count(node_id) == 1, f"{node_id} ran again after the crash"
    for node_id in ("n4", "n5"):
        assert starts.count(node_id) == 1
    assert {line[2] for line in ledger_lines(ledger)} == {"1"}, (
        "the in-flight node reran with the same attempt"
    )
    assert all(c.attempts == 1 for c in done.nodes.values())


@pytest.mark.timeout(60)
async def test_cancel_stops_a_running_cpu_task_within_two_seconds(shared_runtime, tmp_path):
    runtime = shared_runtime
    ledger = tmp_path / "ledger"
    job = await execute(
        runtime,
        [record("busy", ledger, "record_cpu", seconds=60), record("after", ledger)],
        chain("busy", "after"),
    )
    await wait_for(runtime, job.id, lambda j: len(ledger_lines(ledger)) >= 1, timeout_s=30)
    worker_pid = int(ledger_lines(ledger)[0][4])
    started = asyncio.get_running_loop().time()
    cancelled = await runtime.controller.cancel_job(job.id)
    elapsed = asyncio.get_running_loop().time() - started
    assert cancelled.status is JobStatus.CANCELLED and elapsed < 2.0
    assert {n: c.status for n, c in cancelled.nodes.items()} == {
        "busy": NodeStatus.CANCELLED,
        "after": NodeStatus.CANCELLED,
    }
    await wait_until(lambda: not psutil.pid_exists(worker_pid), timeout_s=2)
    assert not psutil.pid_exists(worker_pid), "the worker running the node was stopped"
    again = await runtime.controller.cancel_job(job.id)
    assert again.status is JobStatus.CANCELLED, "cancelling twice is harmless"


@pytest.mark.timeout(60)
async def test_cancelling_a_finished_job_is_a_conflict(shared_runtime, tmp_path):
    from engine.errors import ConflictError

    runtime = shared_runtime
    job = await execute(runtime, [{"id": "s", "type": "start"}], [])
    await wait_for(runtime, job.id, finished)
    with pytest.raises(ConflictError, match="already completed"):
        await runtime.controller.cancel_job(job.id)


@pytest.mark.timeout(120)
async def test_a_rerun_after_a_failure_runs_what_did_not_complete_and_from_nodes_runs_again(
    shared_runtime, tmp_path
):
    runtime = shared_runtime
    ledger, broken = tmp_path / "ledger", tmp_path / "broken"
    broken.touch()
    nodes = [record("a", ledger), record("b", ledger), record("c", ledger, fail_while=str(broken))]
    nodes.append(record("d", ledger))
    job = await execute(runtime, nodes, chain("a", "b", "c", "d"))
    failed = await wait_for(runtime, job.id, finished)
    assert failed.status is JobStatus.FAILED and failed.error and "broken while" in failed.error.message

    def starts(job_id: str) -> list[str]:
        return [line[1] for line in ledger_lines(ledger) if line[0] == job_id and line[3] == "start"]

    assert starts(failed.id) == ["a", "b", "c"]
    broken.unlink()
    rerun = await runtime.controller.rerun_job(failed, "alice")
    done = await wait_for(runtime, rerun.id, finished)
    assert (done.status, done.rerun_of) == (JobStatus.COMPLETED, failed.id), done.error
    assert starts(done.id) == ["c", "d"], "a and b completed before: they are not run again"
    assert {done.nodes[n].kept_from for n in "ab"} == {failed.id}, "kept, counted in the job that ran them"
    as_ran = [done.nodes[n].model_copy(update={"kept_from": None}) for n in "ab"]
    assert as_ran == [failed.nodes[n] for n in "ab"]

    from_b = await runtime.controller.rerun_job(failed, "alice", from_nodes=["b"])
    done_from_b = await wait_for(runtime, from_b.id, finished)
    assert done_from_b.status is JobStatus.COMPLETED, done_from_b.error
    assert starts(done_from_b.id) == ["b", "c", "d"]
    assert done_from_b.nodes["a"] == failed.nodes["a"].model_copy(update={"kept_from": failed.id})
    assert await runtime.controller.get_job_status(failed.id) == failed, "the old job is untouched"


@pytest.mark.timeout(60)
async def test_retries_and_timeouts_on_ray(shared_runtime, tmp_path):
    runtime = shared_runtime
    ledger = tmp_path / "ledger"
    flaky = {**record("flaky", ledger, fail_times=2), "retry": {"max_attempts": 3, "backoff": 0.05}}
    slow = {**record("slow", ledger, seconds=10), "timeout_s": 0.5}
    job = await execute(runtime, [flaky, slow], [("flaky", "slow")])
    done = await wait_for(runtime, job.id, finished)
    assert done.nodes["flaky"].status is NodeStatus.COMPLETED and done.nodes["flaky"].attempts == 3
    assert done.nodes["flaky"].output["key"] == f"{job.id}:flaky:3"
    assert done.status is JobStatus.FAILED
    assert done.nodes["slow"].error is not None and done.nodes["slow"].error.type == "node_timeout"


@pytest.mark.timeout(240)
async def test_twenty_jobs_under_an_admission_limit_of_four(make_runtime, tmp_path):
    runtime = await make_runtime(MAX_ACTIVE_JOBS=4, WARM_POOL_SIZE=2)
    ledger = tmp_path / "ledger"
    jobs = [await execute(runtime, [record("w", ledger, seconds=0.2)], []) for _ in range(20)]
    peak_running = 0
    while True:
        statuses = [(await runtime.controller.get_job_status(j.id)).status for j in jobs]
        peak_running = max(peak_running, statuses.count(JobStatus.RUNNING))
        if all(s.is_terminal for s in statuses):
            break
        await asyncio.sleep(0.05)
    assert statuses == [JobStatus.COMPLETED] * 20
    stats = await runtime.controller.stats()
    assert stats["peak_active"] <= 4 and peak_running <= 4
    assert stats["peak_active"] == 4, "the limit was reached, so it was what held jobs back"


def runner_names(runtime: ServiceRuntime) -> set[str]:
    return {name for name in job_actor_names(runtime) if name.startswith("job-runner:")}


async def wait_runners(runtime: ServiceRuntime, count: int) -> set[str]:
    await wait_until(lambda: len(runner_names(runtime)) == count, timeout_s=20)
    names = runner_names(runtime)
    assert len(names) == count, f"expected {count} runners, found {sorted(names)}"
    return names


@pytest.mark.timeout(120)
async def test_reuse_mode_runs_many_concurrent_jobs_on_its_few_runners(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="reuse", MAX_ACTIVE_JOBS=12, WARM_POOL_SIZE=2)
    runners = await wait_runners(runtime, 2)
    ledger = tmp_path / "ledger"
    jobs = [await execute(runtime, [record("w", ledger, seconds=2.0)], []) for _ in range(24)]
    seen: set[str] = set()
    while not all([(await runtime.controller.get_job_status(j.id)).status.is_terminal for j in jobs]):
        seen |= runner_names(runtime)
        await asyncio.sleep(0.05)
    assert seen == runners, "24 jobs, 12 at a time, started no actor beyond the 2 runners"
    done = [await runtime.controller.get_job_status(j.id) for j in jobs]
    assert [j.status for j in done] == [JobStatus.COMPLETED] * 24
    by_actor: dict[str | None, list[JobRecord]] = {}
    for job in done:
        by_actor.setdefault(job.actor_name, []).append(job)
    assert set(by_actor) == runners, "both runners took jobs"
    for actor_jobs in by_actor.values():
        spans = sorted((j.started_at, j.finished_at) for j in actor_jobs)
        assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "a runner ran jobs at once"
    assert (await runtime.controller.stats())["peak_active"] == 12


@pytest.mark.timeout(120)
async def test_cancelling_one_job_on_a_shared_runner_leaves_its_other_jobs_running(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="reuse", MAX_ACTIVE_JOBS=4, WARM_POOL_SIZE=1)
    ledger = tmp_path / "ledger"
    jobs = [
        await execute(runtime, [record("a", ledger, seconds=2.0), record("b", ledger)], chain("a", "b"))
        for _ in range(3)
    ]
    running = [
        await wait_for(runtime, j.id, lambda j: "a" in j.nodes and j.nodes["a"].status is NodeStatus.RUNNING)
        for j in jobs
    ]
    assert len({j.actor_name for j in running}) == 1, "the three jobs share the one runner"
    started = asyncio.get_running_loop().time()
    cancelled = await runtime.controller.cancel_job(jobs[1].id)
    assert cancelled.status is JobStatus.CANCELLED
    assert asyncio.get_running_loop().time() - started < 2.0
    others = [await wait_for(runtime, j.id, finished) for j in (jobs[0], jobs[2])]
    assert [j.status for j in others] == [JobStatus.COMPLETED] * 2
    assert all(j.nodes["a"].attempts == 1 for j in others), "the other jobs' nodes were not disturbed"
    done_by_job = {line[0] for line in ledger_lines(ledger) if line[1] == "b" and line[3] == "done"}
    assert done_by_job == {jobs[0].id, jobs[2].id}


@pytest.mark.timeout(120)
async def test_a_runner_retires_after_reuse_max_jobs_and_a_fresh_one_serves(make_runtime, tmp_path):
    runtime = await make_runtime(
        JOB_ACTOR_MODE="reuse", MAX_ACTIVE_JOBS=4, WARM_POOL_SIZE=1, REUSE_MAX_JOBS=3
    )
    ledger = tmp_path / "ledger"
    done: list[JobRecord] = []
    # A retiring runner keeps taking jobs until its replacement is ready, which takes longer on a busy
    # machine: run jobs one after another until a second runner has served one.
    while len({j.actor_name for j in done}) < 2 and len(done) < 40:
        job = await execute(runtime, [record("w", ledger, seconds=0.3)], [])
        done.append(await wait_for(runtime, job.id, finished))
    assert [j.status for j in done] == [JobStatus.COMPLETED] * len(done)
    names = [j.actor_name for j in done]
    retired = list(dict.fromkeys(names))[:-1]
    assert retired, "runners were replaced"
    assert all(names.count(name) >= 3 for name in retired), "each ran its 3 jobs before it was replaced"
    (alive,) = await wait_runners(runtime, 1)
    assert alive not in retired, "the replaced runners ended with their last job"


@pytest.mark.timeout(120)
async def test_kill_9_of_a_runner_resumes_every_job_it_was_running(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="reuse", MAX_ACTIVE_JOBS=4, WARM_POOL_SIZE=1)
    ledger = tmp_path / "ledger"
    ids = ["n1", "n2", "n3"]
    jobs = [
        await execute(runtime, [record(n, ledger, seconds=0.8) for n in ids], chain(*ids)) for _ in range(3)
    ]
    for job in jobs:
        await wait_for(
            runtime, job.id, lambda j: "n2" in j.nodes and j.nodes["n2"].status is NodeStatus.RUNNING
        )
    (runner,) = runner_names(runtime)
    handle = ray_api.get_actor(runner, runtime.runtime.namespace)
    assert handle is not None
    info = await ray_api.JobActorHandle(handle).info()
    assert sorted(info["current_jobs"]) == sorted(j.id for j in jobs)
    os.kill(int(info["pid"]), signal.SIGKILL)
    done = [await wait_for(runtime, j.id, finished) for j in jobs]
    assert [j.status for j in done] == [JobStatus.COMPLETED] * 3
    starts = [(line[0], line[1]) for line in ledger_lines(ledger) if line[3] == "start"]
    for job in jobs:
        assert starts.count((job.id, "n1")) == 1, "a node completed before the crash never ran again"


@pytest.mark.timeout(120)
async def test_a_restarted_manager_adopts_a_runner_with_several_jobs_then_ends_it(make_runtime, tmp_path):
    runtime = await make_runtime(JOB_ACTOR_MODE="reuse", MAX_ACTIVE_JOBS=4, WARM_POOL_SIZE=1)
    ledger = tmp_path / "ledger"
    jobs = [await execute(runtime, [record("w", ledger, seconds=5.0)], []) for _ in range(3)]
    for job in jobs:
        await wait_for(runtime, job.id, lambda j: j.status is JobStatus.RUNNING)
    (old,) = runner_names(runtime)
    stats = await restart_manager(runtime)
    assert stats["active"] == 3, "the three running jobs were adopted, not queued again"
    done = [await wait_for(runtime, j.id, finished) for j in jobs]
    assert [j.status for j in done] == [JobStatus.COMPLETED] * 3
    assert len([line for line in ledger_lines(ledger) if line[3] == "start"]) == 3, "no job ran twice"
    (new,) = await wait_runners(runtime, 1)
    assert new != old, "the adopted runner ended after its jobs; a fresh one serves"


@pytest.mark.timeout(120)
async def test_no_job_actor_is_left_behind_after_jobs_or_a_manager_restart(make_runtime, tmp_path):
    runtime = await make_runtime(WARM_POOL_SIZE=2)
    await wait_until(lambda: len(job_actor_names(runtime)) == 2)
    before = job_actor_names(runtime)
    assert len(before) == 2, "the warm pool is up"
    jobs = [await execute(runtime, [{"id": "s", "type": "start"}], []) for _ in range(3)]
    used = {(await wait_for(runtime, job.id, finished)).actor_name for job in jobs}
    await wait_until(lambda: len(job_actor_names(runtime)) == 2 and not job_actor_names(runtime) & used)
    assert len(job_actor_names(runtime)) == 2, "only the refilled pool remains"

    assert (await runtime.controller.stats())["active"] == 0
    await restart_manager(runtime)
    await wait_until(
        lambda: len(job_actor_names(runtime)) == 2 and not (job_actor_names(runtime) & before), timeout_s=10
    )
    assert not (job_actor_names(runtime) & before), "idle actors of the earlier manager were ended"
    assert len(job_actor_names(runtime)) == 2


async def left_by_an_earlier_run(data_dir: Path) -> None:
    """Three unfinished jobs, the middle one running and unreadable as the service itself once wrote it: its
    start node's output (the input) nested 220 levels deep, stored by pydantic-core's serializer, never read
    back by its parser (200 levels)."""
    store = SqliteStore(data_dir / SQLITE_FILE_NAME)
    await store.start()
    try:
        definition = WorkflowDefinition.model_validate({"name": "w", "nodes": [{"id": "s", "type": "start"}]})
        workflow = await store.create_workflow("alice", definition)
        for job_id in ("first", "damaged", "last"):
            await store.create_job(
                JobRecord(id=job_id, owner="alice", workflow_id=workflow.id, workflow_version=1)
            )
    finally:
        await store.close()
    checkpoint = {"node_id": "s", "node_type": "start", "status": "completed", "output": nested(220)}
    with sqlite3.connect(data_dir / SQLITE_FILE_NAME) as conn:
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = 'damaged'")
        conn.execute(
            "INSERT INTO job_nodes (job_id, node_id, node_type, status, checkpoint) "
            "VALUES ('damaged', 's', 'start', 'completed', ?)",
            (json.dumps(checkpoint),),
        )


@pytest.mark.timeout(120)
async def test_recovery_skips_a_job_it_cannot_read_and_resumes_the_others(make_runtime, tmp_path):
    """Such a row once stopped the job manager from starting at all, so no job of the service ran again."""
    data_dir = tmp_path / "earlier-run"
    await left_by_an_earlier_run(data_dir)
    runtime = await make_runtime(DATA_DIR=data_dir, WARM_POOL_SIZE=0)
    for job_id in ("first", "last"):
        assert (await wait_for(runtime, job_id, finished)).status is JobStatus.COMPLETED
    assert (await runtime.controller.stats())["unreadable_rows"] == 1


@pytest.mark.timeout(180)
def test_the_whole_service_and_ray_stop_and_after_a_restart_jobs_complete_and_waits_end(tmp_path):
    """Two separate lives of the service, each with its own local Ray, sharing only DATA_DIR: one job stops
    mid-run; another's 2 s timer comes due while neither life runs, and fires once at the next start; a
    third's approval, stored before the stop but never delivered, is taken at the next start."""
    data, ledger = tmp_path / "data", tmp_path / "ledger"

    job_ids = service_phase("start", str(data), str(ledger)).split()
    completed_before = [line[1] for line in ledger_lines(ledger) if line[3] == "done"]
    assert completed_before == ["a"]
    resumed = service_phase("resume", str(data), ",".join(job_ids))
    status, timer_status, approval_status, woke, deadline, completions = resumed.split()
    assert (status, timer_status) == ("completed", "completed")
    assert approval_status == "completed", "the decision stored before the stop was taken after it"
    starts = [line[1] for line in ledger_lines(ledger) if line[3] == "start"]
    assert starts.count("a") == 1, "the node completed before the stop never ran again"
    assert {"c", "d"} <= {line[1] for line in ledger_lines(ledger) if line[3] == "done"}
    assert datetime.fromisoformat(woke) >= datetime.fromisoformat(deadline)
    assert completions == "1", "the timer fired once"


@pytest.mark.timeout(120)
async def test_map_fans_out_io_items_in_batches_to_executors(make_runtime, tmp_path):
    runtime = await make_runtime(EXECUTOR_POOL_SIZE=2)
    ledger = tmp_path / "ledger"
    child = {"type": "record_io", "config": {"path": str(ledger), "seconds": 0.3}}
    fan = {
        "id": "fan",
        "type": "map",
        "config": {"items": "{{input.items}}", "node": child, "max_concurrency": 100},
    }
    definition = WorkflowDefinition.model_validate({"name": "fan-demo", "nodes": [fan], "edges": []})
    workflow = await runtime.store.create_workflow("alice", definition)
    job = await runtime.controller.execute_workflow(workflow.id, {"items": list(range(200))}, owner="alice")
    done = await wait_for(runtime, job.id, finished)
    assert done.status is JobStatus.COMPLETED, done.error
    output = done.nodes["fan"].output
    assert output["succeeded"] == 200
    assert [r["key"] for r in output["results"]] == [f"{job.id}:fan[{i}]:1" for i in range(200)]
    starts = [line for line in ledger_lines(ledger) if line[3] == "start"]
    assert len(starts) == 200 and len({line[4] for line in starts}) == 1, "a small map stays in one executor"
    marks = sorted(
        [(float(line[5]), 1) for line in starts]
        + [(float(line[5]), -1) for line in ledger_lines(ledger) if line[3] == "done"]
    )
    in_flight = peak = 0
    for _, change in marks:
        in_flight += change
        peak = max(peak, in_flight)
    assert 50 <= peak <= 100, f"items ran concurrently up to max_concurrency (peak {peak})"
    events = [e async for e in runtime.bus.subscribe(job.id)]
    progress = [e.data for e in events if e.type == "node_progress"]
    assert progress[-1] == {"succeeded": 200, "failed": 0, "total": 200}
    logs = (await runtime.store.list_logs(job.id, limit=1000)).items
    item_logs = [entry for entry in logs if entry.message == "record_io done"]
    assert sorted(entry.data["item"] for entry in item_logs) == list(range(200)), "items' logs reach the job"


def sandbox_processes(since: float) -> set[int]:
    found = set()
    for process in psutil.process_iter(["name", "create_time", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["create_time"] >= since and (process.info["name"] == "bwrap" or " -I -S " in cmdline):
            found.add(process.pid)
    return found


@pytest.mark.timeout(90)
async def test_cancelling_a_code_node_that_sleeps_kills_its_sandbox_within_two_seconds(shared_runtime):
    runtime = shared_runtime
    code = "import time\n\ndef process(input_data):\n    time.sleep(60)\n    return input_data\n"
    node = {
        "id": "sleepy",
        "type": "code",
        "config": {"language": "python", "code": code, "input_mapping": {"input_data": "{{input.q}}"}},
    }
    since = time.time() - 1
    job = await execute(runtime, [node], [])
    await wait_for(
        runtime, job.id, lambda j: "sleepy" in j.nodes and j.nodes["sleepy"].status is NodeStatus.RUNNING
    )
    await wait_until(lambda: bool(sandbox_processes(since)))
    sandboxes = sandbox_processes(since)
    assert sandboxes, "the sandbox process is running"
    started = asyncio.get_running_loop().time()
    cancelled = await runtime.controller.cancel_job(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert asyncio.get_running_loop().time() - started < 2.0
    await wait_until(
        lambda: (
            not any(
                psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                for pid in sandboxes
            )
        ),
        timeout_s=2,
    )
    alive = [pid for pid in sandboxes if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, f"sandbox processes still running: {alive}"
