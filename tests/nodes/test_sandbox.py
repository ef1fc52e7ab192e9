"""The code-node sandbox, exercised with real bubblewrap and real subprocesses."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from engine.errors import SandboxError
from nodes.sandbox import Isolation, SandboxLimits, bubblewrap_problem, run_isolated, run_python
from tests.nodes.sandbox_support import sandbox_processes, wait_for_sandbox

FAST = SandboxLimits(wall_clock_s=10, cpu_s=5)


@pytest.fixture(autouse=True)
async def _require_bubblewrap() -> None:
    problem = await bubblewrap_problem()
    if problem is not None:
        pytest.fail(f"these tests need a working bubblewrap: {problem}")


async def run(code: str, arguments: dict | None = None, limits: SandboxLimits = FAST):
    return await run_python(textwrap.dedent(code), arguments or {}, limits)


async def run_failing(
    code: str, limits: SandboxLimits = FAST, isolation: Isolation = Isolation.BUBBLEWRAP
) -> str:
    with pytest.raises(SandboxError) as caught:
        await run_isolated(textwrap.dedent(code), {}, limits, isolation)
    assert caught.value.retryable is False
    return caught.value.message


SLEEPER = "import time\ndef process():\n    time.sleep(60)\n"


async def test_process_receives_the_arguments_and_returns_json_values():
    arguments = {
        "text": "héllo ✓",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "items": [1, "two", {"three": 3}],
        "nested": {"a": {"b": [True, None]}},
    }
    result = await run(
        """
        def process(text, count, ratio, flag, nothing, items, nested):
            return {"text": text * 2, "count": count + 1, "ratio": ratio * 2, "flag": not flag,
                    "nothing": nothing, "items": items[::-1], "nested": nested, "tuple": (1, 2)}
        """,
        arguments,
    )
    assert result.output == {
        "text": "héllo ✓héllo ✓",
        "count": 4,
        "ratio": 1.0,
        "flag": False,
        "nothing": None,
        "items": [{"three": 3}, "two", 1],
        "nested": {"a": {"b": [True, None]}},
        "tuple": [1, 2],
    }
    assert 0 < result.duration_s < FAST.wall_clock_s


async def test_stdout_and_stderr_are_captured_separately():
    result = await run(
        """
        import sys
        def process():
            print("to stdout")
            print("to stderr", file=sys.stderr)
            return None
        """
    )
    assert result.output is None
    assert result.stdout == "to stdout\n"
    assert result.stderr == "to stderr\n"


async def test_captured_output_is_capped_with_a_marker_and_the_run_still_completes():
    limits = SandboxLimits(wall_clock_s=10, max_log_bytes=1000)
    result = await run(
        """
        import sys
        def process():
            for _ in range(2000):
                print("x" * 99)
                print("y" * 99, file=sys.stderr)
            return "done"
        """,
        limits=limits,
    )
    assert result.output == "done"
    assert result.stdout.endswith("\n[truncated]")
    assert result.stdout.startswith("x" * 99 + "\n")
    assert len(result.stdout) == 1000 + len("\n[truncated]")
    assert result.stderr.endswith("\n[truncated]")
    assert len(result.stderr) == 1000 + len("\n[truncated]")


async def test_syntax_error_names_the_line_and_shows_it():
    message = await run_failing(
        """
        def process():
            total = = 1
            return total
        """
    )
    assert "syntax error at line 3" in message
    assert "total = = 1" in message


async def test_code_without_a_process_function_is_refused():
    message = await run_failing("process = 42\n")
    assert "no `process` function defined" in message


async def test_exception_in_user_code_shows_only_user_frames():
    message = await run_failing(
        """
        def helper(value):
            raise ValueError(f"bad value {value}")

        def process():
            helper(7)
        """
    )
    assert message.startswith("process() raised ValueError: bad value 7")
    assert 'File "<code>", line 6, in process' in message
    assert 'File "<code>", line 3, in helper' in message
    assert 'raise ValueError(f"bad value {value}")' in message
    assert "bootstrap" not in message


async def test_exception_while_loading_the_code_is_reported_as_such():
    message = await run_failing("import no_such_module_here\ndef process():\n    return 1\n")
    assert message.startswith("the code, while loading, raised ModuleNotFoundError")
    assert "no_such_module_here" in message
    assert "bootstrap" not in message


async def test_output_that_is_not_json_is_refused():
    message = await run_failing("def process():\n    return {1, 2}\n")
    assert "not JSON-serialisable" in message
    assert "set" in message
    message = await run_failing("def process():\n    return float('nan')\n")
    assert "not JSON-serialisable" in message


async def test_output_larger_than_the_limit_is_refused():
    limits = SandboxLimits(wall_clock_s=10, max_output_bytes=1000)
    message = await run_failing("def process():\n    return 'x' * 2000\n", limits)
    assert "more than the output limit of 1000 bytes" in message
    result = await run("def process():\n    return 'x' * 900\n", limits=limits)
    assert result.output == "x" * 900


async def test_arguments_that_are_not_json_are_refused_before_running():
    with pytest.raises(SandboxError, match="not JSON-serialisable"):
        await run_python("def process(x):\n    return x\n", {"x": object()}, FAST)


async def test_the_service_environment_is_invisible(monkeypatch):
    monkeypatch.setenv("WORKFLOW_FAKE_SECRET", "s3cr3t-token")
    code = "import os\ndef process():\n    return dict(os.environ)\n"
    for isolation in Isolation:
        result = await run_isolated(code, {}, FAST, isolation)
        assert "WORKFLOW_FAKE_SECRET" not in result.output
        assert not any("s3cr3t-token" in value for value in result.output.values())
        assert set(result.output) <= {"PATH", "LANG", "PWD"}


async def test_user_code_runs_unprivileged_without_capabilities():
    result = await run(
        """
        import os
        def process():
            status = dict(line.split(":\\t") for line in open("/proc/self/status").read().splitlines()
                          if line.startswith("Cap"))
            return {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
                    "caps": [status["CapEff"].strip(), status["CapPrm"].strip(), status["CapAmb"].strip()]}
        """
    )
    assert result.output["uid"] != 0
    assert result.output["euid"] == result.output["uid"]
    assert result.output["groups"] == []
    assert result.output["caps"] == ["0000000000000000"] * 3


async def test_network_is_unreachable_from_the_sandbox_and_from_the_fallback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = f"""
        import socket
        def process():
            outcome = {{}}
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                outcome["connect"] = "connected"
            except OSError as exc:
                outcome["connect"] = type(exc).__name__
            try:
                socket.getaddrinfo("example.com", 80)
                outcome["dns"] = "resolved"
            except OSError as exc:
                outcome["dns"] = type(exc).__name__
            return outcome
        """
    try:
        sandboxed = await run(code)
        unsandboxed = await run_isolated(textwrap.dedent(code), {}, FAST, Isolation.PROCESS)
    finally:
        listener.close()
    assert sandboxed.output["connect"] != "connected"
    assert sandboxed.output["dns"] == "gaierror"
    assert unsandboxed.output["connect"] == "PermissionError"  # the fallback may open no socket at all


async def test_filesystem_is_read_only_except_a_private_tmp(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("host data")
    result = await run(
        f"""
        import sys
        def process():
            outcome = {{}}
            for path in ["/usr/sandbox-probe", "/root-probe", sys.prefix + "/sandbox-probe",
                         "/proc/sandbox-probe", "{host_file}", "/etc/passwd"]:
                try:
                    with open(path, "w") as handle:
                        handle.write("x")
                    outcome[path] = "written"
                except OSError as exc:
                    outcome[path] = type(exc).__name__
            with open("/tmp/scratch.txt", "w") as handle:
                handle.write("scratch")
            outcome["/tmp"] = open("/tmp/scratch.txt").read()
            return outcome
        """
    )
    outcome = result.output
    assert outcome.pop("/tmp") == "scratch"
    assert "written" not in outcome.values(), outcome
    assert host_file.read_text() == "host data"
    assert not (tmp_path / "scratch.txt").exists()


async def test_files_larger_than_the_file_size_limit_cannot_be_written():
    limits = SandboxLimits(wall_clock_s=10, max_file_bytes=4096)
    code = """
        def process(size):
            with open("/tmp/big", "wb") as handle:
                handle.write(b"x" * size)
            return size
        """
    assert (await run(code, {"size": 4096}, limits)).output == 4096
    message = await run_failing(code.replace("def process(size)", "def process(size=8192)"), limits)
    assert "File too large" in message


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_sleeping_process_is_killed_at_the_wall_clock_limit():
    limits = SandboxLimits(wall_clock_s=1.5, cpu_s=10)
    started = time.monotonic()
    message = await run_failing(SLEEPER, limits)
    elapsed = time.monotonic() - started
    assert message.startswith("timed out after 1.5 s")
    assert 1.5 <= elapsed < 1.5 + 2.5
    assert sandbox_processes() == []


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_an_endless_loop_is_stopped_by_the_cpu_limit():
    limits = SandboxLimits(wall_clock_s=15, cpu_s=1)
    started = time.monotonic()
    message = await run_failing("def process():\n    while True:\n        pass\n", limits)
    elapsed = time.monotonic() - started
    assert message == "CPU time limit of 1 s exceeded"
    assert elapsed < 1 + 5  # CPU time lags the wall clock on a busy 2-core machine


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_code_that_ignores_sigxcpu_is_killed_at_the_hard_cpu_limit():
    limits = SandboxLimits(wall_clock_s=15, cpu_s=1)
    started = time.monotonic()
    message = await run_failing(
        """
        import signal
        def process():
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            while True:
                pass
        """,
        limits,
    )
    assert message.startswith("the sandboxed process was killed with SIGKILL: the hard CPU time limit of 1 s")
    assert time.monotonic() - started < 2 + 5


async def test_code_that_exits_without_returning_is_reported():
    message = await run_failing("import os\ndef process():\n    os._exit(3)\n")
    assert message == "the sandboxed process exited with status 3 without returning a result"


@pytest.mark.timeout(30)
async def test_an_8_gb_allocation_hits_the_memory_limit():
    message = await run_failing(
        """
        import resource
        def process():
            # Refuse to try the allocation if the limit were missing: this must never eat 8 GB.
            assert resource.getrlimit(resource.RLIMIT_AS)[0] <= 512 * 2**20
            return len(bytearray(8 * 2**30))
        """
    )
    assert message.startswith("memory limit of 512 MB exceeded")
    assert "MemoryError" in message
    assert 'File "<code>", line 6, in process' in message


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_fork_bomb_is_contained_by_the_process_limit():
    limits = SandboxLimits(wall_clock_s=8, cpu_s=4, max_processes=12)
    before = len(psutil.pids())
    started = time.monotonic()
    message = await run_failing(
        """
        import os
        def process():
            while True:
                os.fork()
        """,
        limits,
    )
    assert time.monotonic() - started < limits.wall_clock_s + 2
    assert "BlockingIOError" in message
    assert "at most 12 processes" in message
    assert sandbox_processes() == []
    assert len(psutil.pids()) < before + 5
    result = await run("def process():\n    return 'still healthy'\n")
    assert result.output == "still healthy"


async def test_the_process_limit_counts_exactly_the_sandboxes_own_processes():
    result = await run(
        """
        import os, time
        def process():
            started = 0
            while started < 50:
                try:
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                except BlockingIOError:
                    break
                started += 1
            return started
        """,
        limits=SandboxLimits(wall_clock_s=10, max_processes=12),
    )
    assert result.output == 11  # 12 processes of its uid, the sandbox's python included


async def test_only_the_main_process_reports_even_if_a_forked_child_returns():
    result = await run(
        """
        import os
        def process():
            if os.fork() == 0:
                return "child"
            os.wait()
            return "parent"
        """
    )
    assert result.output == "parent"


async def test_processes_started_by_user_code_do_not_outlive_the_run():
    result = await run(
        """
        import os, time
        def process():
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            return os.getuid()
        """
    )
    uid = result.output
    leftovers = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    assert leftovers == []


@pytest.mark.timeout(30)
async def test_cancelling_the_run_kills_the_sandbox_before_the_cancellation_propagates():
    task = asyncio.create_task(run(SLEEPER))
    processes = await wait_for_sandbox()
    assert len(processes) == 3  # bwrap, the namespace's init, python
    pids = [process.pid for process in processes]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [pid for pid in pids if is_running(pid)] == []


@pytest.mark.timeout(30)
async def test_a_second_cancellation_during_the_kill_does_not_leave_the_sandbox_running():
    task = asyncio.create_task(run(SLEEPER))
    processes = await wait_for_sandbox()
    task.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [process.pid for process in processes if is_running(process.pid)] == []


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(30)
async def test_the_sandbox_dies_with_the_process_that_launched_it():
    """A Ray force-cancel kills the worker process: its sandbox must not keep running."""
    launcher_code = (
        "import asyncio\n"
        "from nodes.sandbox import SandboxLimits, run_python\n"
        f"asyncio.run(run_python({SLEEPER!r}, {{}}, SandboxLimits()))\n"
    )
    repo_root = Path(__file__).resolve().parents[2]
    launcher = await asyncio.create_subprocess_exec(sys.executable, "-c", launcher_code, cwd=repo_root)
    try:
        processes = await wait_for_sandbox()
    finally:
        launcher.kill()
        await launcher.wait()
    deadline = time.monotonic() + 5
    while running := [process.pid for process in processes if is_running(process.pid)]:
        assert time.monotonic() < deadline, f"sandbox processes {running} outlived their launcher"
        await asyncio.sleep(0.05)


async def test_without_bubblewrap_run_python_refuses_unless_allowed(monkeypatch, caplog):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert await bubblewrap_problem() == "bubblewrap (bwrap) is not installed"
    with pytest.raises(
        SandboxError, match=r"cannot run code: bubblewrap \(bwrap\) is not installed; .*scripts/install"
    ):
        await run_python("def process():\n    return 1\n", {}, FAST)
    with caplog.at_level(logging.WARNING, logger="nodes.sandbox.policy"):
        result = await run_python(
            "import os\ndef process():\n    return os.getpid()\n", {}, FAST, allow_unsandboxed=True
        )
    assert "weaker sandbox (process)" in caplog.text
    assert result.output != os.getpid()


async def test_process_isolation_still_applies_the_limits():
    message = await run_failing(
        """
        import resource
        def process():
            assert resource.getrlimit(resource.RLIMIT_AS)[0] <= 512 * 2**20
            return len(bytearray(8 * 2**30))
        """,
        isolation=Isolation.PROCESS,
    )
    assert message.startswith("memory limit of 512 MB exceeded")
    message = await run_failing(
        SLEEPER,
        SandboxLimits(wall_clock_s=0.5),
        isolation=Isolation.PROCESS,
    )
    assert message.startswith("timed out after 0.5 s")


def test_limits_must_be_positive_numbers_of_the_right_type():
    with pytest.raises(SandboxError, match="memory_bytes must be a positive int, got 0"):
        SandboxLimits(memory_bytes=0)
    with pytest.raises(SandboxError, match=r"cpu_s must be a positive int, got 1\.5"):
        SandboxLimits(cpu_s=1.5)
    assert SandboxLimits(wall_clock_s=0.5).wall_clock_s == 0.5
