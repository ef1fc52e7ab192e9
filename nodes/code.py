"""The code node: the user's `process()` runs in the sandbox (nodes/sandbox), never in this process.

At definition time the code is only compiled and its syntax tree read, never executed: that finds syntax
errors (with their line), a missing `process` function and input_mapping keys that `process` does not
accept. The code itself is never rendered as a template (data must not become code); input_mapping is,
and its entries become process()'s keyword arguments.
"""

from __future__ import annotations

import ast
import keyword
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import NodeExecutionError, Problem
from engine.records import LogLevel
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.sandbox import SandboxLimits, run_python, sandbox_status
from nodes.settings import NodeSettings

USER_FILENAME = "<code>"
MAX_CODE_CHARS = 256 * 2**10
ENTRY_POINT = "process"
UNSANDBOXED_WARNING = "the code runs in a weaker sandbox, as SANDBOX_ALLOW_UNSANDBOXED allows"


class CodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["python"] = Field(default="python", description="The one language code nodes run.")
    code: str = Field(
        min_length=1,
        max_length=MAX_CODE_CHARS,
        description="Python defining `def process(...)`; its return value (JSON) is the node's output.",
    )
    input_mapping: dict[str, Any] = Field(
        default_factory=dict,
        description="process()'s keyword arguments: name -> value or template, e.g. "
        '{"input_data": "{{input.value}}"}.',
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="A wall-clock limit below the service's SANDBOX_WALL_CLOCK_S."
    )
    memory_mb: int | None = Field(
        default=None, gt=0, description="A memory limit below the service's SANDBOX_MEMORY_MB."
    )


class CodeNode(NodeType[CodeConfig]):
    type_name = "code"
    description = (
        "Runs a Python `process(...)` function in a sandbox (no network, read-only filesystem, resource "
        "limits); input_mapping gives its keyword arguments and its return value is the output."
    )
    config_model = CodeConfig
    execution = Execution.CPU
    raw_fields = frozenset({"code"})
    literal_fields = frozenset({"code"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        problems = super().validate_config(config)
        mapping = config.get("input_mapping")
        mapping = mapping if isinstance(mapping, dict) else None
        for key in mapping or ():
            if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
                problems.append(
                    Problem(
                        f"input_mapping key {key!r} is not a valid Python parameter name",
                        field="config.input_mapping",
                    )
                )
        code = config.get("code")
        if isinstance(code, str) and code and len(code) <= MAX_CODE_CHARS:
            problems.extend(code_problems(code, mapping))
        return problems

    async def execute(self, config: CodeConfig, ctx: NodeContext) -> NodeResult:
        settings = ctx.services.settings
        limits = sandbox_limits(config, settings)
        cgroup_parent = settings.sandbox_cgroup_parent
        if settings.sandbox_allow_unsandboxed:
            problem = (await sandbox_status(cgroup_parent)).problem
            if problem is not None:
                ctx.log(LogLevel.WARNING, f"{UNSANDBOXED_WARNING}: {problem}", {})
        result = await run_python(
            config.code,
            config.input_mapping,
            limits,
            allow_unsandboxed=settings.sandbox_allow_unsandboxed,
            cgroup_parent=cgroup_parent,
        )
        if result.stdout:
            ctx.log(LogLevel.INFO, result.stdout.rstrip("\n"), {"stream": "stdout"})
        if result.stderr:
            ctx.log(LogLevel.WARNING, result.stderr.rstrip("\n"), {"stream": "stderr"})
        return NodeResult(output=result.output)


def sandbox_limits(config: CodeConfig, settings: NodeSettings) -> SandboxLimits:
    """The service's limits, with the node's timeout and memory where it asks for less."""
    wall_clock_s = _lowered(
        config.timeout_s, settings.sandbox_wall_clock_s, "timeout_s", "SANDBOX_WALL_CLOCK_S"
    )
    memory_mb = _lowered(config.memory_mb, settings.sandbox_memory_mb, "memory_mb", "SANDBOX_MEMORY_MB")
    return SandboxLimits(
        wall_clock_s=wall_clock_s,
        cpu_s=settings.sandbox_cpu_s,
        memory_bytes=int(memory_mb) * 2**20,
        max_processes=settings.sandbox_max_processes,
        max_output_bytes=settings.sandbox_max_output_bytes,
        max_log_bytes=settings.sandbox_max_log_bytes,
    )


def _lowered(wanted: float | None, ceiling: float, field: str, setting: str) -> float:
    if wanted is None:
        return ceiling
    if wanted > ceiling:
        raise NodeExecutionError(
            f"{field} {wanted:g} is above this service's limit of {ceiling:g} ({setting})"
        )
    return wanted


def code_problems(code: str, input_mapping: dict[str, Any] | None) -> list[Problem]:
    """What is wrong with `code`, found by compiling it (never running it). Parameters are checked
    against `input_mapping` when `process` is a plain function defined once at the top level."""
    try:
        compile(code, USER_FILENAME, "exec", dont_inherit=True)
        tree = ast.parse(code, USER_FILENAME)
    except SyntaxError as exc:
        line = f" at line {exc.lineno}" if exc.lineno else ""
        text = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        return [Problem(f"syntax error{line}: {exc.msg}{text}", field="config.code")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Problem(f"the code cannot be compiled: {type(exc).__name__}: {exc}", field="config.code")]
    bindings = list(_top_level_bindings(tree.body))
    if not bindings:
        return [
            Problem(
                f"no `{ENTRY_POINT}` function: define `def {ENTRY_POINT}(...)` at the top level; it is "
                "called with input_mapping's entries as keyword arguments",
                field="config.code",
            )
        ]
    if len(bindings) != 1 or not isinstance(bindings[0], ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    function = bindings[0]
    if isinstance(function, ast.AsyncFunctionDef):
        return [Problem(f"`{ENTRY_POINT}` must be a plain `def`, not `async def`", field="config.code")]
    if input_mapping is None:
        return []
    return _parameter_problems(function.args, input_mapping)


def _top_level_bindings(statements: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that bind the name `process` at module level, also inside if/try/with blocks."""
    found: list[ast.stmt] = []
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if statement.name == ENTRY_POINT:
                found.append(statement)
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name.split(".")[0]) == ENTRY_POINT for alias in statement.names):
                found.append(statement)
        elif isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names = {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
            if ENTRY_POINT in names:
                found.append(statement)
        else:
            for block in ("body", "orelse", "finalbody", "handlers"):
                nested = getattr(statement, block, None)
                if isinstance(nested, list):
                    for item in nested:
                        found += _top_level_bindings(
                            item.body if isinstance(item, ast.ExceptHandler) else [item]
                        )
    return found


def _parameter_problems(arguments: ast.arguments, input_mapping: dict[str, Any]) -> list[Problem]:
    positional = [*arguments.posonlyargs, *arguments.args]
    first_default = len(positional) - len(arguments.defaults)
    required = {arg.arg for index, arg in enumerate(positional) if index < first_default}
    required |= {
        arg.arg
        for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
        if default is None
    }
    by_name = [arg.arg for arg in [*arguments.args, *arguments.kwonlyargs]]
    signature = ", ".join(arg.arg for arg in [*positional, *arguments.kwonlyargs])
    problems = [
        Problem(
            f"parameter {arg.arg!r} of {ENTRY_POINT}() is positional-only and has no default, but "
            "input_mapping passes arguments by name",
            field="config.code",
        )
        for arg in arguments.posonlyargs
        if arg.arg in required
    ]
    if arguments.kwarg is None:
        problems += [
            Problem(
                f"input_mapping key {key!r} is not a parameter of {ENTRY_POINT}({signature})",
                field=f"config.input_mapping.{key}",
            )
            for key in input_mapping
            if key not in by_name
        ]
    problems += [
        Problem(
            f"{ENTRY_POINT}() needs a value for its parameter {name!r}: add it to input_mapping",
            field="config.input_mapping",
        )
        for name in by_name
        if name in required and name not in input_mapping
    ]
    return problems
