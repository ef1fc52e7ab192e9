"""The code node, run through its config as the platform documents it, in the real bubblewrap sandbox."""

from __future__ import annotations

import ast
import asyncio
import json
import socket
import textwrap
import time
from typing import Any

import psutil
import pytest

from engine.errors import NodeExecutionError, SandboxError
from engine.records import LogLevel
from nodes.code import UNSANDBOXED_WARNING
from nodes.registry import default_registry
from nodes.sandbox import bubblewrap_problem
from nodes.settings import NodeSettings
from tests.nodes.code_node_support import NODE, Run
from tests.nodes.sandbox_support import sandbox_processes, wait_for_sandbox

PLATFORM_EXAMPLE = {
    "language": "python",
    "code": """
def process(input_data):
    result = input_data * 2
    return {"output": result}
        """,
    "input_mapping": {"input_data": "{{input.value}}"},
}


@pytest.fixture(autouse=True)
async def _require_bubblewrap() -> None:
    problem = await bubblewrap_problem()
    if problem is not None:
        pytest.fail(f"these tests need a working bubblewrap: {problem}")


@pytest.fixture
def run() -> Run:
    return Run()


async def test_the_platform_example_doubles_the_input(run):
    assert NODE.validate_config(PLATFORM_EXAMPLE) == []
    result = await run(PLATFORM_EXAMPLE, {"value": 21})
    assert result.output == {"output": 42}
    assert default_registry().get("code").execution.value == "cpu"


async def test_input_mapping_gives_keyword_arguments_of_any_json_type(run):
    config = {
        "code": textwrap.dedent(
            """
            def process(order, customer, discount=0.0, *, currency="EUR"):
                total = sum(line["price"] * line["qty"] for line in order["lines"])
                return [customer.upper(), round(total * (1 - discount), 2), currency, order["rush"]]
            """
        ),
        "input_mapping": {
            "order": "{{input.order}}",
            "customer": "{{input.name}}",
            "discount": 0.1,
        },
    }
    order = {"lines": [{"price": 2.5, "qty": 4}, {"price": 10, "qty": 1}], "rush": None}
    result = await run(config, {"order": order, "name": "ada"})
    assert result.output == ["ADA", 18.0, "EUR", None]


async def test_the_code_is_never_rendered_as_a_template(run):
    config = {
        "code": 'def process(value):\n    return ["{{input.value}}", f"{{{{x}}}}", value]\n',
        "input_mapping": {"value": "{{input.value}}"},
    }
    result = await run(config, {"value": "<data>"})
    assert result.output == ["{{input.value}}", "{{x}}", "<data>"]


@pytest.mark.parametrize("returned", ["None", "[1, 'two']", "'text'", "3.5", "{'nested': {'a': [True]}}"])
async def test_the_output_is_exactly_what_process_returns(run, returned):
    result = await run({"code": f"def process():\n    return {returned}\n"})
    assert result.output == ast.literal_eval(returned)


async def test_stdout_and_stderr_go_to_the_job_logs(run):
    code = """
    import sys
    def process():
        print("step 1 done")
        print("step 2 done")
        print("careful", file=sys.stderr)
        return "ok"
    """
    result = await run({"code": textwrap.dedent(code)})
    assert result.output == "ok"
    assert run.logs == [
        (LogLevel.INFO, "step 1 done\nstep 2 done", {"stream": "stdout"}),
        (LogLevel.WARNING, "careful", {"stream": "stderr"}),
    ]


async def test_logs_are_capped_by_the_service_setting(run):
    capped = NodeSettings(SANDBOX_MAX_LOG_BYTES=100)
    code = "def process():\n    print('y' * 10_000)\n    return 1\n"
    await run({"code": code}, node_settings=capped)
    [(level, message, _)] = run.logs
    assert level is LogLevel.INFO
    assert message == "y" * 100 + "\n[truncated]"


async def test_without_output_nothing_is_logged(run):
    await run({"code": "def process():\n    return 1\n"})
    assert run.logs == []


def problems(config: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(problem.field, problem.message) for problem in NODE.validate_config(config)]


def test_a_syntax_error_is_found_at_definition_time_with_its_line():
    code = "def process(input_data):\n    total = = input_data\n    return total\n"
    assert problems({"language": "python", "code": code}) == [
        ("config.code", "syntax error at line 2: invalid syntax: total = = input_data")
    ]
    assert problems({"code": "return 5\n"}) == [
        ("config.code", "syntax error at line 1: 'return' outside function")
    ]


def test_validation_compiles_but_never_runs_the_code(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')\ndef process():\n    return 1\n"
    assert problems({"code": code}) == []
    assert not marker.exists()


def test_a_missing_process_function_is_found_at_definition_time():
    assert problems({"code": "def handler(input_data):\n    return input_data\n"}) == [
        (
            "config.code",
            "no `process` function: define `def process(...)` at the top level; it is called with "
            "input_mapping's entries as keyword arguments",
        )
    ]
    assert problems({"code": "def outer():\n    def process():\n        pass\n"})[0][1].startswith(
        "no `process`"
    )


@pytest.mark.parametrize(
    "code",
    [
        "from json import dumps as process\n",
        "process = lambda **kw: kw\n",
        "try:\n    from fast import process\nexcept ImportError:\n    def process(x):\n        return x\n",
        "class process:\n    def __init__(self, a):\n        self.a = a\n",
    ],
)
def test_process_bound_otherwise_is_accepted_without_a_parameter_check(code):
    assert problems({"code": code, "input_mapping": {"anything": 1}}) == []


def test_input_mapping_is_checked_against_the_parameters_of_process():
    code = "def process(a, /, b, *, c, d=1):\n    return a\n"
    assert problems({"code": code, "input_mapping": {"b": 1, "x": 2, "class": 3}}) == [
        ("config.input_mapping", "input_mapping key 'class' is not a valid Python parameter name"),
        (
            "config.code",
            "parameter 'a' of process() is positional-only and has no default, but input_mapping passes "
            "arguments by name",
        ),
        ("config.input_mapping.x", "input_mapping key 'x' is not a parameter of process(a, b, c, d)"),
        ("config.input_mapping.class", "input_mapping key 'class' is not a parameter of process(a, b, c, d)"),
        ("config.input_mapping", "process() needs a value for its parameter 'c': add it to input_mapping"),
    ]
    assert problems({"code": "def process(**inputs):\n    return inputs\n", "input_mapping": {"z": 1}}) == []
    assert (
        problems({"code": "def process(a):\n    return a\n", "input_mapping": "{{nodes.prep.output}}"}) == []
    )


def test_other_config_problems_are_named():
    assert problems({"language": "javascript", "code": "def process():\n    pass\n"}) == [
        ("config.language", "Input should be 'python'")
    ]
    assert problems({"code": "async def process():\n    return 1\n"}) == [
        ("config.code", "`process` must be a plain `def`, not `async def`")
    ]
    assert ("config.timeout_s", "Input should be greater than 0") in problems(
        {"code": "def process():\n    pass\n", "timeout_s": 0}
    )


async def test_a_user_exception_shows_its_message_and_the_users_own_frames(run):
    message = await run.failing(
        """
        def check(value):
            if value < 0:
                raise ValueError(f"negative input: {value}")
        def process(value):
            check(value)
            return value
        """,
        input_mapping={"value": -3},
    )
    assert message.startswith("process() raised ValueError: negative input: -3")
    assert 'File "<code>", line 6, in process' in message
    assert 'File "<code>", line 4, in check' in message
    assert "bootstrap" not in message


async def test_a_syntax_error_at_run_time_names_the_line(run):
    message = await run.failing("def process():\n    return (\n")
    assert message.startswith("the code has a syntax error at line 2")


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_an_endless_loop_ends_at_the_node_timeout(run):
    started = time.monotonic()
    message = await run.failing("def process():\n    while True:\n        pass\n", timeout_s=1)
    assert message == "timed out after 1 s (the wall-clock limit)"
    assert time.monotonic() - started < 5


async def test_limits_may_only_be_lowered(run):
    with pytest.raises(
        NodeExecutionError, match=r"timeout_s 60 is above this service's limit of 20 \(SANDBOX_WALL"
    ):
        await run({"code": "def process():\n    return 1\n", "timeout_s": 60})
    with pytest.raises(NodeExecutionError, match=r"memory_mb 4096 is above this service's limit of 512"):
        await run({"code": "def process():\n    return 1\n", "memory_mb": 4096})


async def test_an_8_gb_allocation_hits_the_memory_limit(run):
    message = await run.failing(
        "def process():\n    block = bytearray(8 * 2**30)\n    return len(block)\n", memory_mb=128
    )
    assert message.startswith("memory limit of 128 MB exceeded")


async def test_the_environment_holds_no_secrets(run, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", "jwt-secret-value-1234")
    monkeypatch.setenv("REDIS_PASSWORD", "redis-password-5678")
    code = """
    import os
    def process():
        environ_files = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/environ", "rb") as file:
                        environ_files.append(file.read().decode(errors="replace"))
                except OSError:
                    pass
        return {"environ": dict(os.environ), "proc": environ_files}
    """
    result = await run({"code": textwrap.dedent(code)})
    dumped = json.dumps(result.output)
    assert result.output["environ"] == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PWD": "/tmp"}
    for secret in ("jwt-secret-value-1234", "redis-password-5678", "JWT_SECRET"):
        assert secret not in dumped


async def test_network_connections_fail_even_to_a_listening_loopback_port(run):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = """
    import socket
    def process(port):
        outcomes = []
        for address in (("127.0.0.1", port), ("1.1.1.1", 53)):
            try:
                socket.create_connection(address, timeout=2).close()
                outcomes.append("connected")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
        return outcomes
    """
    try:
        result = await run({"code": textwrap.dedent(code), "input_mapping": {"port": port}})
        assert "connected" not in result.output
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_writing_outside_tmp_fails(run, tmp_path):
    code = """
    def process(path):
        with open("/tmp/scratch", "w") as file:
            file.write("fine")
        try:
            open(path, "w").write("escaped")
        except OSError as exc:
            return type(exc).__name__
        return "written"
    """
    target = tmp_path / "escape.txt"
    result = await run({"code": textwrap.dedent(code), "input_mapping": {"path": str(target)}})
    assert result.output in ("FileNotFoundError", "PermissionError", "OSError")
    assert not target.exists()


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_cancelling_execute_kills_the_sandbox(run):
    task = asyncio.create_task(run({"code": "import time\ndef process():\n    time.sleep(60)\n"}))
    processes = await wait_for_sandbox()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [process.pid for process in processes if psutil.pid_exists(process.pid)] == []
    assert sandbox_processes() == []


async def test_without_bubblewrap_the_node_refuses_unless_the_setting_allows_it(run, monkeypatch, tmp_path):
    """An empty PATH hides the real `bwrap`: the node then refuses, or runs process-only with a warning."""
    monkeypatch.setenv("PATH", str(tmp_path))
    config = {"code": "def process(x):\n    return x + 1\n", "input_mapping": {"x": 1}}
    with pytest.raises(SandboxError, match=r"cannot run code: bubblewrap \(bwrap\) is not installed"):
        await run(config)
    allowed = NodeSettings(SANDBOX_ALLOW_UNSANDBOXED=True)
    result = await run(config, node_settings=allowed)
    assert result.output == 2
    [(level, message, _)] = run.logs
    assert level is LogLevel.WARNING
    assert message == f"{UNSANDBOXED_WARNING}: bubblewrap (bwrap) is not installed"
