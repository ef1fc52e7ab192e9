"""Node types for runtime tests, loaded into Ray's workers through NODE_PLUGINS by import path.

Their side effects are lines appended to files, so a test counts what really ran, in any process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from engine.errors import NodeExecutionError, RetryableNodeError
from engine.records import LogLevel
from nodes.base import Execution, NodeContext, NodeResult, NodeType


class RecordConfig(BaseModel):
    path: str
    seconds: float = 0.0
    fail_times: int = 0
    fail_while: str | None = None
    """A path: while a file is there, every attempt fails (not retryable); remove it to fix the node."""


def _record(path: str, ctx: NodeContext, event: str) -> int:
    """Append one line (job, node, attempt, event, pid, time, idempotency key) and return how many lines
    this node has written for this job."""
    with open(path, "a", encoding="utf-8") as ledger:
        fields = (ctx.job_id, ctx.node_id, ctx.attempt, event, os.getpid(), time.time(), ctx.idempotency_key)
        ledger.write(" ".join(str(field) for field in fields) + "\n")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return sum(
        1 for line in lines if line.split()[:2] == [ctx.job_id, ctx.node_id] and line.split()[3] == event
    )


class RecordIoNode(NodeType[RecordConfig]):
    """Waits `seconds` as a coroutine in an executor actor, recording its start and end."""

    type_name = "record_io"
    description = "test node"
    config_model = RecordConfig
    execution = Execution.IO

    async def execute(self, config: RecordConfig, ctx: NodeContext) -> NodeResult:
        started = _record(config.path, ctx, "start")
        if started <= config.fail_times:
            raise RetryableNodeError(f"planned failure {started} of {config.fail_times}")
        if config.fail_while and os.path.exists(config.fail_while):
            raise NodeExecutionError(f"broken while {config.fail_while} exists")
        await asyncio.sleep(config.seconds)
        _record(config.path, ctx, "done")
        ctx.log(LogLevel.INFO, "record_io done", {"node": ctx.node_id})
        return NodeResult(output={"pid": os.getpid(), "key": ctx.idempotency_key})


class RecordCpuNode(NodeType[RecordConfig]):
    """Blocks a Ray task's worker for `seconds`, recording its start and end."""

    type_name = "record_cpu"
    description = "test node"
    config_model = RecordConfig
    execution = Execution.CPU

    async def execute(self, config: RecordConfig, ctx: NodeContext) -> NodeResult:
        _record(config.path, ctx, "start")
        time.sleep(config.seconds)
        _record(config.path, ctx, "done")
        return NodeResult(output={"pid": os.getpid()})


PLUGINS = ("tests.actors.ray_test_nodes:RecordIoNode", "tests.actors.ray_test_nodes:RecordCpuNode")
