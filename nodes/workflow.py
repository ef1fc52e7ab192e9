"""The workflow node: runs another workflow as a child job and waits for it, holding nothing meanwhile.

The child is a job like any other (its own actor, events, logs, checkpoints, retries), started as the
parent's owner with the attempt's idempotency key, so a parent resumed after a crash never starts a second
child for the same attempt, and a retry starts a new one. The node waits for the signal the job manager
sends when the child ends (`child:<child job id>`); a child that failed or was cancelled fails the node.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import ChildJobError, NodeExecutionError
from engine.records import WaitInfo, WaitKind, utcnow
from engine.waits import child_signal
from nodes.base import NodeContext, NodeResult
from nodes.waiting import WaitArrival, WaitingNodeType


class WorkflowNodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(min_length=1, max_length=128, description="A workflow of the same owner.")
    version: int | None = Field(
        default=None, ge=1, description="The version to run; if not given, the latest when the job started."
    )
    input: dict[str, Any] = Field(default_factory=dict, description="The child job's input; templated.")


class WorkflowNode(WaitingNodeType[WorkflowNodeConfig]):
    type_name = "workflow"
    description = (
        "Runs the workflow `workflow_id` as a child job with `input`; its output is the child's result."
    )
    config_model = WorkflowNodeConfig

    async def execute(self, config: WorkflowNodeConfig, ctx: NodeContext) -> NodeResult:
        starter = ctx.services.child_jobs
        if starter is None:
            raise NodeExecutionError(f"node '{ctx.node_id}': a workflow node runs only within a job")
        child = await starter.start(
            config.workflow_id, config.version, config.input, ctx.node_id, ctx.idempotency_key
        )
        wait = WaitInfo(
            kind=WaitKind.CHILD,
            signal=child_signal(child.id),
            since=utcnow(),
            settings={
                "child_job_id": child.id,
                "workflow_id": child.workflow_id,
                "version": child.workflow_version,
            },
        )
        return NodeResult(output=None, wait=wait)

    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult:
        child = wait.settings.get("child_job_id")
        payload = arrival.signal.payload if arrival.signal is not None else {}
        if payload.get("status") == "completed":
            return NodeResult(output=payload.get("result"))
        error = payload.get("error") or {}
        reason = f": {error.get('message')}" if error.get("message") else ""
        raise ChildJobError(f"child job {child} {payload.get('status', 'ended')}{reason}")
