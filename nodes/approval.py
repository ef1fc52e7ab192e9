"""The approval node: pauses the job until a person approves or rejects, or its timeout decides.

The decision arrives as the signal named after the node (after the agent's node and the call, as
`agent.2.0`, for an agent's approval tool), `{"approved": true|false, "comment"?, "data"?}`,
from the job's owner, an admin or one of `approvers`. With `approve_edge` / `reject_edge` the decision
routes like a conditional's branches; without a `reject_edge` a rejection fails the node.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import NodeExecutionError, WaitTimedOutError
from engine.records import WaitInfo, WaitKind, utcnow
from nodes.base import NodeContext, NodeResult
from nodes.waiting import MAX_WAIT_S, WaitArrival, WaitingNodeType, deadline_after


class ApprovalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, description="What the approver sees; templates are rendered.")
    approvers: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Subjects who may decide besides the job's owner and admins.",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=MAX_WAIT_S, description="Decide by `on_timeout` after this long."
    )
    on_timeout: Literal["reject", "approve", "fail"] = Field(
        default="reject", description="What a timeout decides: reject, approve, or fail the node."
    )
    approve_edge: str | None = Field(default=None, description="The successor to run when approved.")
    reject_edge: str | None = Field(default=None, description="The successor to run when rejected.")


class ApprovalNode(WaitingNodeType[ApprovalConfig]):
    type_name = "approval"
    description = (
        "Waits until a person approves or rejects (the signal named after the node), or `timeout_s` "
        "decides by `on_timeout`; routes to `approve_edge` or `reject_edge`."
    )
    config_model = ApprovalConfig
    routing_fields = ("approve_edge", "reject_edge")

    async def execute(self, config: ApprovalConfig, ctx: NodeContext) -> NodeResult:
        since = utcnow()
        wait = WaitInfo(
            kind=WaitKind.APPROVAL,
            signal=ctx.own_signal,
            message=config.message,
            since=since,
            deadline=deadline_after(since, config.timeout_s),
            approvers=config.approvers,
            settings=config.model_dump(include={"on_timeout", "approve_edge", "reject_edge", "timeout_s"}),
        )
        return NodeResult(output=None, wait=wait)

    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult:
        settings = wait.settings
        if arrival.signal is None:
            if settings.get("on_timeout") == "fail":
                raise WaitTimedOutError(f"no decision within {settings.get('timeout_s')} s")
            approved = settings.get("on_timeout") == "approve"
            output = _decision(approved, None, "decided by timeout", None, arrival)
        else:
            payload = arrival.signal.payload
            output = _decision(
                payload.get("approved") is True,
                arrival.signal.sender,
                payload.get("comment"),
                payload.get("data"),
                arrival,
            )
        approve_edge, reject_edge = settings.get("approve_edge"), settings.get("reject_edge")
        if output["approved"]:
            inactive = {reject_edge} if reject_edge and reject_edge != approve_edge else set()
            return NodeResult(output=output, inactive_targets=frozenset(inactive))
        if not reject_edge:
            by = f" by {output['by']}" if output["by"] else ""
            comment = f": {output['comment']}" if output["comment"] else ""
            raise NodeExecutionError(f"rejected{by}{comment}")
        inactive = {approve_edge} if approve_edge and approve_edge != reject_edge else set()
        return NodeResult(output=output, inactive_targets=frozenset(inactive))


def _decision(
    approved: bool, by: str | None, comment: Any, data: Any, arrival: WaitArrival
) -> dict[str, Any]:
    return {
        "approved": approved,
        "by": by,
        "comment": comment,
        "data": data,
        "decided_at": arrival.time.isoformat(),
    }
