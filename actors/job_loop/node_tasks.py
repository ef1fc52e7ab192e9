"""Carrying out the scheduling step's actions for a job or a map item's sub-graph: each node's attempt,
or its wait before a retry, as one task whose outcome comes back as the step's next event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from engine.backoff import equal_jitter
from engine.dag import Dag
from engine.errors import NodeTimeoutError
from engine.failures import error_info
from engine.nesting import check_value_depth
from engine.records import ErrorInfo
from engine.scheduler import (
    Action,
    CancelNodes,
    NodeFailed,
    NodeSucceeded,
    NodeWaits,
    RetryDue,
    RunNode,
    ScheduleRetry,
    SchedulerEvent,
)
from nodes.base import NodeResult

Execute = Callable[[str, int], Awaitable[NodeResult]]
"""Runs attempt `attempt` of node `node_id` where it belongs."""


class NodeTasks:
    """One task per node of a DAG: its running attempt (bounded by the node's `timeout_s`) or its wait
    before a retry. A finished attempt goes to `report` as NodeSucceeded or NodeFailed (its error's type
    and retryability kept, a timeout as `node_timeout`, an output nested deeper than MAX_JSON_DEPTH as
    `nesting_too_deep`), an attempt that starts a wait as NodeWaits, a due retry as RetryDue."""

    def __init__(
        self,
        dag: Dag,
        execute: Execute,
        report: Callable[[SchedulerEvent], None],
        clock: Callable[[], datetime],
        jitter: Callable[[float], float] = equal_jitter,
        name_prefix: str = "",
    ) -> None:
        self._dag, self._execute, self._report = dag, execute, report
        self._clock, self._jitter, self._name_prefix = clock, jitter, name_prefix
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def perform(self, action: Action) -> None:
        match action:
            case RunNode(node_id, attempt):
                self._start(node_id, self._attempt(node_id, attempt))
            case ScheduleRetry(node_id, _, delay_s):
                self._start(node_id, self._retry_after(node_id, self._jitter(delay_s)))
            case CancelNodes(node_ids):
                for node_id in node_ids:
                    task = self._tasks.pop(node_id, None)
                    if task is not None:
                        task.cancel()

    async def cancel_all(self) -> None:
        """Cancel every node's task and wait until they have ended."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, node_id: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"{self._name_prefix}{node_id}")
        self._tasks[node_id] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(node_id, None) if self._tasks.get(node_id) is done else None
        )

    async def _retry_after(self, node_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._report(RetryDue(node_id, self._clock()))

    async def _attempt(self, node_id: str, attempt: int) -> None:
        self._report(await attempt_outcome(self._dag, self._execute, node_id, attempt, self._clock))


async def attempt_outcome(
    dag: Dag, execute: Execute, node_id: str, attempt: int, clock: Callable[[], datetime]
) -> SchedulerEvent:
    """Run attempt `attempt` of node `node_id`, bounded by its `timeout_s`, and say how it ended as the
    scheduling step's event: NodeSucceeded, NodeWaits, or NodeFailed (see `NodeTasks`)."""
    timeout_s = dag.nodes[node_id].timeout_s
    try:
        result = await asyncio.wait_for(execute(node_id, attempt), timeout=timeout_s)
        check_value_depth(result.output, f"the output of node '{node_id}'")
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        message = f"node '{node_id}' timed out after {timeout_s} s"
        error = ErrorInfo(type=NodeTimeoutError.code, retryable=True, message=message)
        return NodeFailed(node_id, error, clock())
    except Exception as exc:
        return NodeFailed(node_id, error_info(exc), clock())
    if result.wait is not None:
        return NodeWaits(node_id, result.wait, clock())
    return NodeSucceeded(node_id, result.output, clock(), result.inactive_targets, result.usage)
