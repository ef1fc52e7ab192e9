"""Launch user Python code in a sandbox and turn what comes back into a result or a SandboxError.

User code never runs in the calling process. With bubblewrap (the default) it runs in fresh mount, pid,
network, IPC and UTS namespaces, sees only /usr, /lib* and the Python installation read-only plus a
private size-capped /tmp, has no network, an empty environment and, as a random unprivileged uid with no
capabilities, rlimits on CPU, memory, processes, file size and open files, under the seccomp filter of
nodes/sandbox/seccomp.py. RLIMIT_NPROC is ignored for root, which is why the bootstrap drops to a uid of
its own instead of relying on a user namespace (which would map the sandbox back to root here). Each run
also gets a cgroup of its own (nodes/sandbox/cgroups.py) where the machine allows: one memory limit for
all its processes, tmpfs and shared memory included, and a process limit.

The "process" isolation is the weaker fallback: no namespaces, but an empty environment, a scratch
working directory, Landlock (only the system and Python directories readable, only the scratch directory
writable, no TCP, no access to other processes' /proc files or signals), the seccomp filter, the rlimits
and, as root, a uid of its own; without root RLIMIT_NPROC counts every process of the service's uid.

A run is bounded by the wall clock; on timeout or cancellation the whole tree is killed and reaped before
the coroutine returns. Killing the sandbox's pid-1 (from bwrap's --info-fd) rather than bwrap itself
lets bwrap reap it, so no zombie is left for an init that does not reap orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import SandboxError
from nodes.sandbox.cgroups import CgroupUnavailable, RunCgroup, cgroup_layout, launch_prefix
from nodes.sandbox.seccomp import SeccompUnavailable, compiled_filter, filter_pipe

logger = logging.getLogger(__name__)

BOOTSTRAP_PATH = Path(__file__).with_name("bootstrap.py")
SANDBOX_BOOTSTRAP_PATH = "/bootstrap.py"
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
UNPRIVILEGED_UIDS = (1 << 20, 1 << 30)
BUBBLEWRAP_PROCESSES = 2
"""bwrap itself and the namespace's init, in the run's cgroup beside the user's processes."""
RESULT_OVERHEAD_BYTES = 64 * 2**10
MAX_MESSAGE_CHARS = 16_000
STDERR_TAIL_CHARS = 2_000
KILL_GRACE_S = 2.0
TRUNCATED_MARKER = "\n[truncated]"
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
TMPFS_SIZE_SINCE = (0, 8)


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    PROCESS = "process"


@dataclass(frozen=True)
class SandboxLimits:
    wall_clock_s: float = 30.0
    cpu_s: int = 30
    memory_bytes: int = 512 * 2**20
    max_processes: int = 32
    max_file_bytes: int = 16 * 2**20
    max_open_files: int = 64
    max_output_bytes: int = 1 * 2**20
    max_log_bytes: int = 64 * 2**10
    max_tmp_bytes: int = 64 * 2**20
    """Size of the private /tmp; tmpfs pages are not covered by RLIMIT_AS, so they need their own cap."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            wanted = int if field.type == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted) or not value > 0:
                raise SandboxError(
                    f"sandbox limit {field.name} must be a positive {field.type}, got {value!r}"
                )


@dataclass(frozen=True)
class SandboxResult:
    output: Any
    stdout: str
    stderr: str
    duration_s: float


async def run_isolated(
    code: str,
    arguments: dict[str, Any],
    limits: SandboxLimits,
    isolation: Isolation,
    *,
    cgroup_parent: str = "",
) -> SandboxResult:
    """Run `code` with the given isolation and every confinement that works here: a cgroup of its own
    (unless no hierarchy allows one) and the seccomp filter (unless libseccomp is missing). run_python
    (nodes/sandbox/policy.py) decides whether a run may go ahead without them."""
    uid = random.randint(*UNPRIVILEGED_UIDS) if os.geteuid() == 0 else None
    try:
        seccomp_program: bytes | None = compiled_filter(allow_sockets=isolation is Isolation.BUBBLEWRAP)
    except SeccompUnavailable:
        seccomp_program = None
    bubblewrap = isolation is Isolation.BUBBLEWRAP
    cgroup = _run_cgroup(limits, isolation, cgroup_parent)
    workdir = None if bubblewrap else tempfile.mkdtemp(prefix="sandbox-")
    try:
        if workdir is None:
            launch = _bubblewrap_launch(limits, uid, seccomp_program)
        else:
            launch = _process_only_launch(workdir, uid, seccomp_program)
        try:
            request = _encode_request(code, arguments, limits, uid=uid, confine=launch.confine)
        except SandboxError:
            for fd in launch.extra_fds:
                os.close(fd)
            raise
        return await _SandboxRun(limits, bubblewrap=bubblewrap, cgroup=cgroup).execute(
            launch.build_argv, request, workdir, launch.extra_fds
        )
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        if cgroup is not None:
            await _despite_cancellation(cgroup.remove())


@dataclass(frozen=True)
class _Launch:
    build_argv: Callable[[int, int | None], list[str]]
    """The command for (result_fd, info_fd)."""
    confine: dict[str, Any] | None
    """What the bootstrap confines itself with (the process-only fallback)."""
    extra_fds: list[int]
    """Descriptors the command is handed besides the result and info pipes."""


def _run_cgroup(limits: SandboxLimits, isolation: Isolation, cgroup_parent: str) -> RunCgroup | None:
    try:
        layout = cgroup_layout(cgroup_parent)
    except CgroupUnavailable:
        return None
    overhead = BUBBLEWRAP_PROCESSES if isolation is Isolation.BUBBLEWRAP else 0
    try:
        return RunCgroup.create(
            layout, memory_bytes=limits.memory_bytes, max_processes=limits.max_processes + overhead
        )
    except CgroupUnavailable as exc:
        raise SandboxError(f"cannot run code: {exc}") from exc


def _bubblewrap_launch(limits: SandboxLimits, uid: int | None, seccomp_program: bytes | None) -> _Launch:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bubblewrap (bwrap) is not installed")
    if uid is None:
        raise SandboxError("the bubblewrap sandbox needs the service to run as root")
    seccomp_fd = filter_pipe(seccomp_program) if seccomp_program is not None else None

    def build_argv(result_fd: int, info_fd: int | None) -> list[str]:
        command = [interpreter(), "-I", "-S", SANDBOX_BOOTSTRAP_PATH, str(result_fd)]
        return bubblewrap_argv(bwrap, limits, info_fd, command, seccomp_fd)

    return _Launch(build_argv, None, [seccomp_fd] if seccomp_fd is not None else [])


def _process_only_launch(workdir: str, uid: int | None, seccomp_program: bytes | None) -> _Launch:
    """The fallback without bubblewrap: no namespaces; Landlock confines what the code may open and
    connect to, seccomp what it may call, and as root it runs under a uid of its own."""
    if uid is not None:
        os.chown(workdir, uid, uid)
    confine = {
        "readable": _fallback_readable_paths(),
        "writable": [workdir, "/dev/null"],
        "seccomp": seccomp_program.hex() if seccomp_program is not None else None,
    }
    return _Launch(
        lambda result_fd, _: [interpreter(), "-I", "-S", str(BOOTSTRAP_PATH), str(result_fd)], confine, []
    )


def _fallback_readable_paths() -> list[str]:
    system = [name for name in ("/usr", *_SYSTEM_DIRS) if os.path.exists(name)]
    python = {str(Path(sys.base_prefix).resolve()), str(Path(interpreter()).parent)}
    return [*system, *sorted(python), "/dev/urandom", "/dev/zero"]


def _encode_request(
    code: str,
    arguments: dict[str, Any],
    limits: SandboxLimits,
    *,
    uid: int | None,
    confine: dict[str, Any] | None,
) -> bytes:
    if not isinstance(code, str):
        raise SandboxError(f"code must be a string, got {type(code).__name__}")
    if not isinstance(arguments, dict) or not all(isinstance(key, str) for key in arguments):
        raise SandboxError("arguments for process() must be a dict with string keys")
    sandbox_limits = {
        "cpu_s": limits.cpu_s,
        "memory_bytes": limits.memory_bytes,
        "max_processes": limits.max_processes,
        "max_file_bytes": limits.max_file_bytes,
        "max_open_files": limits.max_open_files,
        "max_output_bytes": limits.max_output_bytes,
    }
    try:
        request = {
            "code": code,
            "arguments": arguments,
            "limits": sandbox_limits,
            "uid": uid,
            "confine": confine,
        }
        return json.dumps(request, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise SandboxError(f"arguments for process() are not JSON-serialisable: {exc}") from exc


def interpreter() -> str:
    """The real interpreter binary (a venv's python is a symlink; -I -S never reads pyvenv.cfg anyway)."""
    return os.path.realpath(sys.executable)


def bubblewrap_argv(
    bwrap: str, limits: SandboxLimits, info_fd: int | None, command: list[str], seccomp_fd: int | None
) -> list[str]:
    argv = [
        bwrap,
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--hostname", "sandbox",
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
        "--clearenv",
    ]  # fmt: skip
    for name, value in SANDBOX_ENV.items():
        argv += ["--setenv", name, value]
    argv += _filesystem_args()
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if _has_tmpfs_size(bwrap):
        argv += ["--size", str(limits.max_tmp_bytes)]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    argv += ["--ro-bind", str(BOOTSTRAP_PATH), SANDBOX_BOOTSTRAP_PATH, "--chdir", "/tmp"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--", *command]


@functools.cache
def _has_tmpfs_size(bwrap: str) -> bool:
    """bubblewrap 0.8 added --size; with an older one (Ubuntu 22.04 ships 0.6) only the run's cgroup
    memory limit bounds /tmp."""
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    found = re.search(r"(\d+)\.(\d+)", version)
    return found is not None and (int(found[1]), int(found[2])) >= TMPFS_SIZE_SINCE


def _filesystem_args() -> list[str]:
    """Read-only /usr, the /bin and /lib* links or dirs, and the Python installation at its own path."""
    args = ["--ro-bind", "/usr", "/usr"]
    bound = [Path("/usr")]
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
            bound.append(path)
    created: set[Path] = set()
    for needed in (Path(sys.base_prefix).resolve(), Path(interpreter()).parent):
        if any(needed.is_relative_to(root) for root in bound):
            continue
        for ancestor in reversed(needed.parents[:-1]):
            if ancestor not in created:
                args += ["--perms", "0755", "--dir", str(ancestor)]
                created.add(ancestor)
        args += ["--ro-bind", str(needed), str(needed)]
        bound.append(needed)
    return args


class _SandboxRun:
    """One launched sandbox: feeds the request, drains its pipes, enforces the wall clock, kills it."""

    def __init__(self, limits: SandboxLimits, *, bubblewrap: bool, cgroup: RunCgroup | None) -> None:
        self._limits = limits
        self._bubblewrap = bubblewrap
        self._cgroup = cgroup
        self._proc: asyncio.subprocess.Process | None = None
        self._init_pidfd: int | None = None
        self._main_pidfd: int | None = None
        self._info_task: asyncio.Task[None] | None = None
        self._finished = False
        self._out_of_memory = False

    async def execute(
        self,
        build_argv: Callable[[int, int | None], list[str]],
        request: bytes,
        workdir: str | None,
        extra_fds: list[int],
    ) -> SandboxResult:
        """Launch `build_argv(result_fd, info_fd)` and wait for its report, within the wall clock.

        `extra_fds` are handed to the process too, and closed here once it started."""
        loop = asyncio.get_running_loop()
        result_read, result_write = os.pipe()
        info_read, info_write = os.pipe() if self._bubblewrap else (None, None)
        read_files = [os.fdopen(fd, "rb", buffering=0) for fd in (result_read, info_read) if fd is not None]
        write_fds = [fd for fd in (result_write, info_write) if fd is not None] + extra_fds
        readers: list[asyncio.Task[Any]] = []
        transports: list[asyncio.BaseTransport] = []
        try:
            result_reader = await _pipe_reader(loop, read_files[0], transports)
            if info_read is not None:
                info_reader = await _pipe_reader(loop, read_files[1], transports)
                self._info_task = asyncio.create_task(self._read_info(info_reader))
                readers.append(self._info_task)
            argv = build_argv(result_write, info_write)
            if self._cgroup is not None:
                argv = [*launch_prefix(len(self._cgroup.procs_files)), *self._cgroup.procs_files, *argv]
                self._cgroup.watch_oom(self._on_out_of_memory)
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, pass_fds=write_fds, start_new_session=True,
                    env=SANDBOX_ENV, cwd=workdir,
                )  # fmt: skip
            except OSError as exc:
                raise SandboxError(f"could not start the sandbox: {exc}") from exc
            self._proc = proc
            try:
                self._main_pidfd = os.pidfd_open(proc.pid)
            except ProcessLookupError:
                self._main_pidfd = None  # already gone (and reaped)
            while write_fds:
                os.close(write_fds.pop())
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            stdout_task = asyncio.create_task(_read_capped(proc.stdout, self._limits.max_log_bytes))
            stderr_task = asyncio.create_task(_read_capped(proc.stderr, self._limits.max_log_bytes))
            result_cap = self._limits.max_output_bytes + RESULT_OVERHEAD_BYTES
            result_task = asyncio.create_task(_read_capped(result_reader, result_cap))
            readers += [
                stdout_task,
                stderr_task,
                result_task,
                asyncio.create_task(_feed(proc.stdin, request)),
            ]
            timed_out = self._main_pidfd is not None and not await _exited(
                self._main_pidfd, self._limits.wall_clock_s
            )
            duration_s = time.monotonic() - started
            await self._kill()
            await asyncio.wait(readers, timeout=KILL_GRACE_S)
            if self._out_of_memory or (self._cgroup is not None and self._cgroup.oom_killed()):
                raise SandboxError(
                    f"memory limit of {_size(self._limits.memory_bytes)} exceeded (by the run's processes "
                    "together, /tmp and shared memory included)"
                )
            if timed_out:
                raise SandboxError(f"timed out after {self._limits.wall_clock_s:g} s (the wall-clock limit)")
            if not all(task.done() for task in (stdout_task, stderr_task, result_task)):
                raise SandboxError("the sandbox exited but left a process holding its output open")
            stderr = _decode(*stderr_task.result())
            output = self._interpret(result_task.result(), proc.returncode, stderr)
            return SandboxResult(output, _decode(*stdout_task.result()), stderr, duration_s)
        finally:
            await _despite_cancellation(self._kill())
            for task in readers:
                task.cancel()
            for transport in transports:
                transport.close()
            for file in read_files:
                file.close()
            for pidfd in (self._init_pidfd, self._main_pidfd):
                if pidfd is not None:
                    os.close(pidfd)
            for fd in write_fds:
                os.close(fd)

    async def _read_info(self, reader: asyncio.StreamReader) -> None:
        """Hold a pidfd on the sandbox's pid-1, whose host pid bwrap writes to --info-fd as flat JSON."""
        with contextlib.suppress(ValueError, OSError, asyncio.IncompleteReadError):
            pid = json.loads(await reader.readuntil(b"}")).get("child-pid")
            if isinstance(pid, int) and pid > 0:
                self._init_pidfd = os.pidfd_open(pid)

    def _on_out_of_memory(self) -> None:
        """The OOM killer struck inside the run (cgroup v1 tells through an eventfd): end all of it now."""
        self._out_of_memory = True
        if self._init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
        elif self._cgroup is not None:
            self._cgroup.kill()

    async def _kill(self) -> None:
        """Kill the whole process tree and reap it (once); called after a normal exit too.

        With bubblewrap, SIGKILL goes to the sandbox's pid-1 through a pidfd: the kernel then kills every
        process of the namespace, and bwrap reaps its child instead of leaving a zombie. bwrap may exit
        before its pid-1 has torn the namespace down, so waiting on the pidfd is what guarantees that no
        user process outlives the run. Without bubblewrap the run's cgroup is killed, which also takes
        processes that left the process group; whatever is still in the cgroup afterwards goes too.
        """
        proc = self._proc
        if proc is None or self._finished:
            return
        if self._bubblewrap:
            await self._kill_namespace(proc)
        else:
            _kill_group(proc.pid)  # the group outlives its leader: user code may have left children behind
            if self._cgroup is not None:
                self._cgroup.kill()
            with contextlib.suppress(TimeoutError):  # without a cgroup, a process that left the group
                async with asyncio.timeout(KILL_GRACE_S):  # keeps the pipes open: the caller reports it
                    await proc.wait()
        if self._cgroup is not None:
            self._cgroup.kill()
        self._finished = True

    async def _kill_namespace(self, proc: asyncio.subprocess.Process) -> None:
        if self._info_task is not None:
            await asyncio.wait([self._info_task], timeout=KILL_GRACE_S)
        if self._init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
            if not await _exited(self._init_pidfd, KILL_GRACE_S):
                logger.warning("the sandbox's pid-1 did not exit within %s s of SIGKILL", KILL_GRACE_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_GRACE_S):
                await proc.wait()
        if proc.returncode is None:
            _kill_group(proc.pid)
            await proc.wait()

    def _interpret(self, result: tuple[bytes, bool], returncode: int | None, stderr: str) -> Any:
        data, truncated = result
        limits = self._limits
        if truncated:
            raise SandboxError(
                f"the code's output is larger than the limit of {_size(limits.max_output_bytes)}"
            )
        if data:
            try:
                report = json.loads(data)
            except ValueError as exc:
                raise SandboxError(f"the sandbox returned a malformed result ({exc})") from exc
            if not isinstance(report, dict) or not isinstance(report.get("ok"), bool):
                raise SandboxError("the sandbox returned a malformed result")
            if report["ok"]:
                return report.get("output")
            raise _error_from_report(report, limits)
        raise SandboxError(_exit_message(returncode, self._bubblewrap, limits, stderr))


def _error_from_report(report: dict[str, Any], limits: SandboxLimits) -> SandboxError:
    kind = report.get("kind")
    if kind == "syntax":
        where = f" at line {report['line']}" if report.get("line") else ""
        return SandboxError(f"the code has a syntax error{where}:\n{report.get('detail')}")
    if kind == "no_process":
        return SandboxError(
            "no `process` function defined: the code must define `def process(...)` at top level; "
            "it is called with the node's inputs as keyword arguments"
        )
    if kind == "memory":
        return SandboxError(
            _cap(f"memory limit of {_size(limits.memory_bytes)} exceeded\n\n{report.get('traceback')}")
        )
    if kind == "not_json":
        return SandboxError(
            f"process() returned a value that is not JSON-serialisable: {report.get('detail')}"
        )
    if kind == "too_large":
        return SandboxError(
            f"process() returned {_size(int(report.get('size', 0)))} of JSON, more than the output limit "
            f"of {_size(limits.max_output_bytes)}"
        )
    if kind == "exception":
        where = "process()" if report.get("phase") == "call" else "the code, while loading,"
        hint = ""
        if report.get("type") == "BlockingIOError" and report.get("errno") == 11:
            hint = f" (the sandbox allows at most {limits.max_processes} processes)"
        return SandboxError(
            _cap(f"{where} raised {report.get('headline')}{hint}\n\n{report.get('traceback')}")
        )
    return SandboxError("the sandbox returned a malformed result")


def _exit_message(returncode: int | None, bubblewrap: bool, limits: SandboxLimits, stderr: str) -> str:
    signum = None
    if returncode is not None and returncode < 0:
        signum = -returncode
    elif bubblewrap and returncode is not None and returncode > 128:
        signum = returncode - 128  # bwrap reports a child killed by a signal as 128 + signal
    tail = stderr[-STDERR_TAIL_CHARS:].strip()
    stderr_note = f"; its stderr ends with:\n{tail}" if tail else ""
    if signum == signal.SIGXCPU:
        return f"CPU time limit of {limits.cpu_s} s exceeded"
    if signum == signal.SIGKILL:
        return (
            f"the sandboxed process was killed with SIGKILL: the hard CPU time limit of {limits.cpu_s} s "
            f"or the system running out of memory{stderr_note}"
        )
    if signum is not None:
        return f"the sandboxed process died from {signal.Signals(signum).name}{stderr_note}"
    return f"the sandboxed process exited with status {returncode} without returning a result{stderr_note}"


async def _despite_cancellation(work: Coroutine[Any, Any, None]) -> None:
    """Finish `work` even if the caller is cancelled meanwhile, then let the cancellation through."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


async def _exited(pidfd: int, timeout_s: float) -> bool:
    """Wait until the process behind `pidfd` has exited (a pidfd turns readable then), at most `timeout_s`.

    Unlike asyncio's Process.wait(), this does not also wait for the process's pipes to close (which a
    child that escaped the kill could hold open)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def mark_exited() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, mark_exited)
    try:
        async with asyncio.timeout(timeout_s):
            await exited
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _pipe_reader(
    loop: asyncio.AbstractEventLoop, file: BinaryIO, transports: list[asyncio.BaseTransport]
) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), file)
    transports.append(transport)
    return reader


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read to EOF keeping at most `cap` bytes, so a chatty process never blocks on a full pipe."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(64 * 2**10):
        room = cap - len(kept)
        if len(chunk) > room:
            truncated = True
            chunk = chunk[: max(room, 0)]
        kept += chunk
    return bytes(kept), truncated


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


def _decode(data: bytes, truncated: bool) -> str:
    text = data.decode(errors="replace")
    return text + TRUNCATED_MARKER if truncated else text


def _cap(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS // 4] + "\n[truncated]\n" + message[-MAX_MESSAGE_CHARS * 3 // 4 :]


def _size(num_bytes: int) -> str:
    megabytes = num_bytes / 2**20
    if megabytes >= 1:
        return f"{megabytes:g} MB" if megabytes == int(megabytes) else f"{megabytes:.1f} MB"
    return f"{num_bytes} bytes"
