"""The live progress lines and map-node bars, from real JobEvents."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.progress import UNREACHABLE_WAIT, ProgressPrinter, progress_bar
from engine.records import EventType, JobEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: EventType, at: float, node_id: str | None = None, /, **data: Any) -> JobEvent:
    return JobEvent(
        sequence=1,
        type=kind,
        time=T0 + timedelta(seconds=at),
        job_id="j1",
        workflow_id="w1",
        node_id=node_id,
        data=data,
    )


def test_bar_shows_done_failed_and_remaining():
    assert progress_bar(0, 0, 10, width=10) == "[----------]  0/10"
    assert progress_bar(5, 0, 10, width=10) == "[#####-----]  5/10"
    assert progress_bar(6, 2, 10, width=10) == "[######xx--]  8/10, 2 failed"
    assert progress_bar(10, 0, 10, width=10) == "[##########] 10/10"
    assert progress_bar(0, 0, 0, width=4) == "[----]  0/0"


def test_a_line_per_state_change_with_durations_and_errors():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["fetch", "summarize"], interactive=False)
    for item in (
        event(EventType.JOB_STARTED, 0),
        event(EventType.NODE_STARTED, 0, "fetch", attempt=1),
        event(EventType.NODE_RETRYING, 0.5, "fetch", next_attempt=2, delay_s=1.0, error={"message": "503"}),
        event(EventType.NODE_STARTED, 1.5, "fetch", attempt=2),
        event(EventType.NODE_COMPLETED, 2.0, "fetch", attempt=2),
        event(EventType.NODE_SKIPPED, 2.0, "summarize"),
        event(EventType.LLM_TOKEN, 2.1, "summarize", text="ignored"),
        event(EventType.JOB_COMPLETED, 2.2),
    ):
        printer.show(item)
    printer.close()
    assert stream.getvalue().splitlines() == [
        "[  0.0s] job running",
        "[  0.0s] fetch      running",
        "[  0.5s] fetch      retrying: attempt 2 in 1.00 s after 503",
        "[  1.5s] fetch      running (attempt 2)",
        "[  2.0s] fetch      completed in 0.50 s",
        "[  2.0s] summarize  skipped",
        "[  2.2s] job completed",
    ]


def test_failures_show_their_message():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["call"], interactive=False)
    printer.show(event(EventType.NODE_STARTED, 0, "call", attempt=1, resumed=True))
    printer.show(event(EventType.NODE_FAILED, 1, "call", error={"message": "HTTP 403"}, handled=False))
    printer.show(event(EventType.JOB_FAILED, 1, error={"message": "node 'call' failed: HTTP 403"}))
    assert stream.getvalue().splitlines() == [
        "[  0.0s] call  running, resumed after a restart",
        "[  1.0s] call  failed in 1.00 s: HTTP 403",
        "[  1.0s] job failed: node 'call' failed: HTTP 403",
    ]


@pytest.mark.timeout(5)
def test_a_line_per_finished_loop_iteration():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["refine"], interactive=False)
    printer.show(event(EventType.LOOP_ITERATION, 1, "refine", index=0, until_held=False))
    printer.show(event(EventType.LOOP_ITERATION, 2, "refine", index=1, until_held=True))
    assert stream.getvalue().splitlines() == [
        "[  0.0s] refine  iteration 0 finished",
        "[  1.0s] refine  iteration 1 finished, until held",
    ]


def test_progress_events_redraw_one_bar_in_place_on_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["fan"], interactive=True)
    printer.show(event(EventType.NODE_STARTED, 0, "fan", attempt=1))
    for done in (2, 5, 8):
        printer.show(event(EventType.NODE_PROGRESS, done / 10, "fan", succeeded=done, failed=0, total=8))
    printer.show(event(EventType.NODE_COMPLETED, 1, "fan", attempt=1))
    printer.close()
    lines = stream.getvalue().split("\n")
    assert lines[0] == "[  0.0s] fan  running"
    redraws = lines[1].split("\r")
    assert len(redraws) == 3, "three updates share one line"
    assert redraws[-1].startswith("[  0.8s] fan  [########################] 8/8")
    assert lines[2] == "[  1.0s] fan  completed in 1.00 s"


def test_progress_events_are_lines_in_a_log():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["fan"], interactive=False)
    for done in (1, 2):
        printer.show(event(EventType.NODE_PROGRESS, done, "fan", succeeded=done, failed=0, total=2))
    assert "\r" not in stream.getvalue()
    assert len(stream.getvalue().splitlines()) == 2


def test_waits_and_the_signals_that_end_them_are_lines_of_their_own():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["review", "hook", "later"], interactive=False)
    for item in (
        event(EventType.NODE_STARTED, 0, "review", attempt=1),
        event(EventType.NODE_WAITING, 0.1, "review", kind="approval", signal="review", message="ship v2?"),
        event(EventType.NODE_WAITING, 0.2, "hook", kind="signal", signal="paid", message=None),
        event(EventType.NODE_WAITING, 0.3, "later", kind="timer", deadline="2026-01-02T00:00:00+00:00"),
        event(EventType.SIGNAL_RECEIVED, 5.0, "review", signal="review", signal_id="s1", by="alice"),
        event(EventType.NODE_COMPLETED, 5.0, "review", attempt=1),
    ):
        printer.show(item)
    assert stream.getvalue().splitlines() == [
        "[  0.0s] review  running",
        "[  0.1s] review  waiting for approval: ship v2?",
        "[  0.2s] hook    waiting for signal paid",
        "[  0.3s] later   waiting until 2026-01-02T00:00:00+00:00",
        "[  5.0s] review  signal review received from alice",
        "[  5.0s] review  completed in 5.00 s",
    ]


def test_a_run_in_this_process_says_that_only_a_timeout_ends_a_wait_for_a_signal():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, ["review", "later"], interactive=False, signals_reach_it=False)
    printer.show(event(EventType.NODE_WAITING, 0, "review", kind="approval", signal="review", message="ok?"))
    printer.show(
        event(EventType.NODE_WAITING, 0.1, "later", kind="timer", deadline="2026-01-02T00:00:00+00:00")
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[  0.0s] review  waiting for approval: ok?"
    assert lines[1].strip() == UNREACHABLE_WAIT
    assert lines[2:] == ["[  0.1s] later   waiting until 2026-01-02T00:00:00+00:00"], "a timer ends by itself"
