"""Live progress of a job on a terminal: a line per node state change (a wait and the signal that ends
it among them), a bar per running map node.

Lines look like `[  1.2s] classify   completed in 0.84 s`; the time is counted from the job's first
event. A map node's `node_progress` events ({succeeded, failed, total}) draw a bar: on a terminal it is
redrawn in place while nothing else is printed, elsewhere (a log, a pipe) each update is its own line.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

from engine.records import EventType, JobEvent, WaitKind

BAR_WIDTH = 24
CLEAR_TO_END = "\x1b[K"


def progress_bar(succeeded: int, failed: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#########-----x------]  10/24, 1 failed`: `#` done, `x` failed, `-` still to run."""
    total = max(total, 0)
    done = succeeded + failed
    if total == 0:
        return f"[{'-' * width}]  0/0"
    filled_ok = min(width, round(width * succeeded / total))
    filled_bad = min(width - filled_ok, round(width * failed / total))
    bar = "#" * filled_ok + "x" * filled_bad + "-" * (width - filled_ok - filled_bad)
    failures = f", {failed} failed" if failed else ""
    return f"[{bar}] {done:>{len(str(total))}}/{total}{failures}"


class ProgressPrinter:
    def __init__(
        self,
        stream: TextIO,
        node_ids: Iterable[str] = (),
        *,
        interactive: bool | None = None,
        signals_reach_it: bool = True,
    ) -> None:
        """`signals_reach_it`: False for a job run in this process, which serves no API, so a wait for a
        person or a signal is told to end only by its timeout (or Ctrl-C)."""
        self._stream = stream
        self._signals_reach_it = signals_reach_it
        self._width = max((len(node_id) for node_id in node_ids), default=4)
        self._interactive = stream.isatty() if interactive is None else interactive
        self._first: datetime | None = None
        self._started: dict[str, datetime] = {}
        self._open_bar: str | None = None

    def note(self, text: str) -> None:
        """A line that is no event: the job id, a cancellation request."""
        self._line(f"{'':9}{text}")

    def show(self, event: JobEvent) -> None:
        if self._first is None:
            self._first = event.time
        text = self._describe(event)
        if text is None:
            return
        stamp = f"[{(event.time - self._first).total_seconds():5.1f}s] "
        if event.type == EventType.NODE_PROGRESS and self._interactive:
            self._bar(event.node_id or "", stamp + text)
        else:
            self._line(stamp + text)
        if (
            not self._signals_reach_it
            and event.type == EventType.NODE_WAITING
            and event.data.get("kind") in (WaitKind.APPROVAL, WaitKind.SIGNAL)
        ):
            self.note(UNREACHABLE_WAIT)

    def close(self) -> None:
        if self._open_bar is not None:
            self._stream.write("\n")
            self._open_bar = None
        self._stream.flush()

    # ------------------------------------------------------------ rendering

    def _describe(self, event: JobEvent) -> str | None:
        data = event.data
        node = f"{event.node_id or '':<{self._width}}  "
        match event.type:
            case EventType.JOB_STARTED:
                return "job running"
            case EventType.NODE_STARTED:
                self._started[event.node_id or ""] = event.time
                return node + _started_text(data)
            case EventType.NODE_COMPLETED:
                return node + f"completed{self._took(event)}"
            case EventType.NODE_FAILED:
                handled = " (handled, the job goes on)" if data.get("handled") else ""
                return node + f"failed{self._took(event)}: {_error_message(data)}{handled}"
            case EventType.NODE_RETRYING:
                delay = float(data.get("delay_s") or 0)
                attempt = data.get("next_attempt")
                return node + f"retrying: attempt {attempt} in {delay:.2f} s after {_error_message(data)}"
            case EventType.NODE_SKIPPED:
                return node + "skipped"
            case EventType.NODE_WAITING:
                return node + _waiting_text(data)
            case EventType.SIGNAL_RECEIVED:
                sender = f" from {data['by']}" if data.get("by") else ""
                return node + f"signal {data.get('signal')} received{sender}"
            case EventType.NODE_PROGRESS:
                return node + progress_bar(
                    int(data.get("succeeded", 0)), int(data.get("failed", 0)), int(data.get("total", 0))
                )
            case EventType.LOOP_ITERATION:
                held = ", until held" if data.get("until_held") else ""
                return node + f"iteration {data.get('index')} finished{held}"
            case EventType.JOB_COMPLETED:
                return "job completed"
            case EventType.JOB_FAILED:
                return f"job failed: {_error_message(data)}"
            case EventType.JOB_CANCELLED:
                reason = data.get("reason")
                return f"job cancelled: {reason}" if reason else "job cancelled"
        return None

    def _took(self, event: JobEvent) -> str:
        started = self._started.get(event.node_id or "")
        return f" in {(event.time - started).total_seconds():.2f} s" if started else ""

    def _line(self, text: str) -> None:
        if self._open_bar is not None:
            self._stream.write("\n")
            self._open_bar = None
        self._stream.write(text + "\n")
        self._stream.flush()

    def _bar(self, node_id: str, text: str) -> None:
        if self._open_bar is not None and self._open_bar != node_id:
            self._stream.write("\n")
        prefix = "\r" if self._open_bar == node_id else ""
        self._stream.write(f"{prefix}{text}{CLEAR_TO_END}")
        self._stream.flush()
        self._open_bar = node_id


UNREACHABLE_WAIT = (
    "this run serves no API, so nothing can send it that signal: only a timeout_s ends the wait (or "
    "Ctrl-C); run it on a service instead (workflow-service serve, then run --url ...)"
)


def _started_text(data: dict[str, Any]) -> str:
    attempt = int(data.get("attempt") or 1)
    text = "running" if attempt == 1 else f"running (attempt {attempt})"
    return text + (", resumed after a restart" if data.get("resumed") else "")


def _waiting_text(data: dict[str, Any]) -> str:
    """A `node_waiting` event: the job goes on once the approval is decided, the signal arrives or the
    timer is due."""
    match data.get("kind"):
        case WaitKind.APPROVAL:
            return f"waiting for approval: {data.get('message')}"
        case WaitKind.SIGNAL:
            return f"waiting for signal {data.get('signal')}"
    return f"waiting until {data.get('deadline')}"


def _error_message(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "unknown error")
    return "unknown error"
