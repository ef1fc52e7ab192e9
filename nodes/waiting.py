"""What the node types that wait (approval, wait) share: they start a wait instead of finishing, and
decide its outcome when a signal or the wait's deadline comes.

`execute` returns a `NodeResult` whose `wait` the job stores in the node's checkpoint; `finish_wait` gets
that stored wait back (on whichever actor resumes the job) with what ended it, and returns the node's
result or raises its error. Neither may do I/O: the outcome is a function of the wait and its arrival.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from engine.records import SignalRecord, WaitInfo
from nodes.base import NodeResult, NodeType

ConfigT = TypeVar("ConfigT", bound=BaseModel)

MAX_WAIT_S = 366 * 24 * 3600
"""The longest wait or timeout a node may set: a year and a day."""


@dataclass(frozen=True)
class WaitArrival:
    """What ends a wait: a signal, or (signal None) its deadline passing at `time`."""

    time: datetime
    signal: SignalRecord | None = None


@runtime_checkable
class WaitFinisher(Protocol):
    """A node type that decides the outcome of its nodes' waits: every waiting type, and the agent, whose
    tool calls may wait."""

    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult: ...


class WaitingNodeType(NodeType[ConfigT]):
    waits = True

    @abstractmethod
    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult:
        """The node's result once its wait is over; raises NodeExecutionError for a failed wait."""


def deadline_after(since: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else since + timedelta(seconds=seconds)
