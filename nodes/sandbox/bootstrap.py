"""The program that runs INSIDE the sandbox: `python3 -I -S bootstrap.py RESULT_FD`.

It reads one JSON request `{"code", "arguments", "limits", "uid", "confine"}` from stdin, drops to `uid`
when given (bubblewrap starts it as root with only CAP_SETUID/CAP_SETGID), applies the resource limits,
in the process-only fallback confines itself (`confine`: Landlock and the seccomp filter, which bubblewrap
applies otherwise), runs the user's code, calls `process(**arguments)` and writes exactly one JSON report
to RESULT_FD: `{"ok": true, "output": ...}` or `{"ok": false, "kind": ..., ...}`. The launcher turns
reports into messages. User stdout/stderr stay on fds 1 and 2. This file must stay self-contained (only
it is mounted into the sandbox) and lean: it starts once per run, so it imports nothing it can avoid.
"""

import io
import json
import os
import resource
import sys

TYPE_CHECKING = False  # typing's flag without importing typing at every start; mypy takes it as true
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Iterable

USER_FILENAME = "<code>"
MAX_DETAIL_CHARS = 16_000


def main() -> None:
    main_pid = os.getpid()
    result_fd = int(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    confine = request.get("confine")
    landlock = _landlock_ruleset(confine["readable"], confine["writable"]) if confine else None
    if request.get("uid") is not None:
        _drop_privileges(request["uid"], keep_stdlib=confine is not None)
    limits = request["limits"]
    _apply_limits(limits)
    if confine:
        _confine(landlock, confine["seccomp"])
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        report = _run(request["code"], request["arguments"], limits["max_output_bytes"])
    except MemoryError:
        report = _report(kind="memory", traceback="")
    _finish(result_fd, report, main_pid)


def _drop_privileges(uid: int, *, keep_stdlib: bool) -> None:
    """Become `uid`. Without bubblewrap's mounts the standard library may sit in a directory only root
    can enter (e.g. /root/.pyenv): then it stays importable through a descriptor opened before."""
    prefix_fd = os.open(sys.base_prefix, os.O_PATH) if keep_stdlib else None
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"sandbox bootstrap: could not drop privileges to uid {uid}")
    if prefix_fd is not None and not os.access(sys.base_prefix, os.X_OK):
        prefix, through_fd = sys.base_prefix, f"/proc/self/fd/{prefix_fd}"

        def reachable(paths: "Iterable[str]") -> list[str]:
            return [
                through_fd + entry[len(prefix) :] if entry.startswith(prefix) else entry for entry in paths
            ]

        sys.path[:] = reachable(sys.path)
        for module in list(sys.modules.values()):  # packages imported at start-up find submodules here
            if isinstance(getattr(module, "__path__", None), list):
                module.__path__[:] = reachable(module.__path__)
        sys.path_importer_cache.clear()


LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_READ = 1 | 4 | 8  # execute, read_file, read_dir
LANDLOCK_FILE_RIGHTS = 1 | 2 | 4  # execute, write_file, read_file: all a rule on a file may grant
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def _landlock_ruleset(readable: list[str], writable: list[str]) -> "tuple[ctypes.CDLL, int]":
    """A Landlock ruleset (not yet in force) allowing only `readable` (read, execute) and `writable`
    (everything) in the filesystem, no TCP bind or connect, and (ABI 6) no signal or abstract unix socket
    outside the sandbox. Landlock also denies ptrace-style access, /proc/<pid>/environ included, to every
    process outside the sandbox."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        raise SystemExit(f"sandbox bootstrap: Landlock is not available ({os.strerror(ctypes.get_errno())})")
    fs_rights = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0)
    fs_rights |= 1 << 15 if abi >= 5 else 0
    handled = (ctypes.c_uint64 * 3)(fs_rights, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(LANDLOCK_CREATE_RULESET, handled, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise SystemExit(f"sandbox bootstrap: no Landlock ruleset ({os.strerror(ctypes.get_errno())})")

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    for paths, rights in ((readable, LANDLOCK_READ), (writable, fs_rights)):
        for path in paths:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            allowed = rights if os.path.isdir(path) else rights & (LANDLOCK_FILE_RIGHTS | 1 << 14) & fs_rights
            rule = PathBeneath(allowed, fd)
            if libc.syscall(LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                raise SystemExit(
                    f"sandbox bootstrap: Landlock refused {path} ({os.strerror(ctypes.get_errno())})"
                )
            os.close(fd)
    return libc, ruleset


def _confine(landlock: "tuple[ctypes.CDLL, int] | None", seccomp_hex: str | None) -> None:
    """Put the Landlock ruleset in force, then load the seccomp filter (both need no_new_privs)."""
    import ctypes

    libc, ruleset = landlock if landlock else (ctypes.CDLL(None, use_errno=True), -1)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("sandbox bootstrap: could not set no_new_privs")
    if ruleset >= 0:
        if libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise SystemExit(f"sandbox bootstrap: Landlock refused ({os.strerror(ctypes.get_errno())})")
        os.close(ruleset)
    if seccomp_hex:
        code = bytes.fromhex(seccomp_hex)
        program = (ctypes.c_char * len(code)).from_buffer_copy(code)

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        fprog = SockFprog(len(code) // 8, ctypes.addressof(program))
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
            raise SystemExit(f"sandbox bootstrap: seccomp refused ({os.strerror(ctypes.get_errno())})")


def _apply_limits(limits: dict[str, int]) -> None:
    cpu_s = limits["cpu_s"]
    wanted = (
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
        (resource.RLIMIT_NPROC, limits["max_processes"], limits["max_processes"]),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"], limits["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"], limits["max_open_files"]),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, soft, hard in wanted:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        resource.setrlimit(which, (min(soft, hard), hard))


def _run(code: str, arguments: dict[str, object], max_output_bytes: int) -> bytes:
    try:
        compiled = compile(code, USER_FILENAME, "exec")
    except SyntaxError as exc:
        return _report(kind="syntax", line=exc.lineno, detail=_exception_only(exc))
    except ValueError as exc:
        return _report(kind="syntax", line=None, detail=str(exc))
    namespace: dict[str, object] = {"__name__": "user_code"}
    try:
        exec(compiled, namespace)
    except BaseException as exc:
        return _exception_report("load", exc, code)
    process = namespace.get("process")
    if not callable(process):
        return _report(kind="no_process")
    try:
        output = process(**arguments)
    except BaseException as exc:
        return _exception_report("call", exc, code)
    try:
        encoded = json.dumps(output, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return _report(kind="not_json", detail=str(exc))
    if len(encoded) > max_output_bytes:
        return _report(kind="too_large", size=len(encoded))
    return b'{"ok":true,"output":' + encoded + b"}"


def _exception_report(phase: str, exc: BaseException, code: str) -> bytes:
    """Describe an exception raised by user code, with the user's frames only."""
    import linecache
    import traceback

    linecache.cache[USER_FILENAME] = (len(code), None, code.splitlines(keepends=True), USER_FILENAME)
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, frames))
    if isinstance(exc, MemoryError):
        return _report(kind="memory", traceback=_tail(text))
    errno = getattr(exc, "errno", None)
    return _report(
        kind="exception",
        phase=phase,
        type=type(exc).__name__,
        headline=_exception_only(exc).splitlines()[-1],
        errno=errno if isinstance(errno, int) else None,
        traceback=_tail(text),
    )


def _exception_only(exc: BaseException) -> str:
    import traceback

    return _tail("".join(traceback.format_exception_only(type(exc), exc)).rstrip())


def _tail(text: str) -> str:
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return "[truncated]\n" + text[-MAX_DETAIL_CHARS:]


def _report(**fields: object) -> bytes:
    return json.dumps({"ok": False, **fields}).encode()


def _finish(result_fd: int, report: bytes, main_pid: int) -> None:
    if os.getpid() != main_pid:
        os._exit(0)  # a process forked by user code returned into the bootstrap: only the main one reports
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            continue
    view = memoryview(report)
    while view:
        view = view[os.write(result_fd, view) :]
    os._exit(0)


if __name__ == "__main__":
    main()
