"""The program that runs INSIDE the sandbox: `python3 -I -S bootstrap.py RESULT_FD [UID]`.

It reads one JSON request `{"code", "arguments", "limits"}` from stdin, drops to UID when given (bubblewrap
starts it as root with only CAP_SETUID/CAP_SETGID), applies the resource limits, runs the user's code,
calls `process(**arguments)` and writes exactly one JSON report to RESULT_FD:
`{"ok": true, "output": ...}` or `{"ok": false, "kind": ..., ...}`. The launcher turns reports into
messages. User stdout/stderr stay on fds 1 and 2. This file must stay self-contained (only it is
mounted into the sandbox) and lean: it starts once per run, so it imports nothing it can avoid.
"""

import json
import os
import resource
import sys

USER_FILENAME = "<code>"
MAX_DETAIL_CHARS = 16_000


def main() -> None:
    main_pid = os.getpid()
    result_fd = int(sys.argv[1])
    if len(sys.argv) > 2:
        _drop_privileges(int(sys.argv[2]))
    request = json.loads(sys.stdin.buffer.read())
    limits = request["limits"]
    _apply_limits(limits)
    sys.stdout.reconfigure(line_buffering=True)
    try:
        report = _run(request["code"], request["arguments"], limits["max_output_bytes"])
    except MemoryError:
        report = _report(kind="memory", traceback="")
    _finish(result_fd, report, main_pid)


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"sandbox bootstrap: could not drop privileges to uid {uid}")


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
