"""Jobs that wait: what a job waits for, signals to it, and an approver's inbox of open approvals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, status
from pydantic import ValidationError

from engine.errors import Problem
from engine.records import JobStatus, Page
from engine.waits import CHILD_SIGNAL_PREFIX, open_approvals, open_waits
from gateway.deps import (
    ControllerDep,
    CurrentUser,
    OwnedJob,
    PageParams,
    SignalableJob,
    StoreDep,
    authenticate,
)
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, UNREADABLE, InvalidRequestError, documented
from gateway.schemas import ApprovalDecision, ApprovalOut, SignalOut, WaitOut
from storage.job_pages import all_jobs

router = APIRouter(tags=["waits"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])

SignalKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="A repeated signal with the same key is stored, and delivered, once",
    ),
]
SignalBody = Annotated[
    dict[str, Any] | None,
    Body(
        description="The signal's payload (a JSON object); an approval's is "
        '`{"approved": true|false, "comment"?, "data"?}`',
        examples=[{"approved": True, "comment": "looks good"}],
    ),
]


@router.get(
    "/api/v1/jobs/{job_id}/waits",
    responses={**documented(404, "No such job"), **UNREADABLE},
    summary="What the job waits for now: approvals, signals and timers",
)
async def job_waits(job: OwnedJob) -> list[WaitOut]:
    return [WaitOut(node_id=node_id, **wait.model_dump()) for node_id, wait in open_waits(job.nodes)]


@router.post(
    "/api/v1/jobs/{job_id}/signals/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **documented(404, "No such job, or one the caller may not signal"),
        **documented(409, "The job has ended"),
        **BODY_TOO_LARGE,
    },
    summary="Send a signal to a job (an approval's decision is the signal named after its node)",
)
async def send_signal(
    target: SignalableJob,
    principal: CurrentUser,
    controller: ControllerDep,
    idempotency_key: SignalKey = None,
    body: SignalBody = None,
) -> SignalOut:
    if target.name.startswith(CHILD_SIGNAL_PREFIX):
        raise InvalidRequestError(
            f"signal '{target.name}': names starting with '{CHILD_SIGNAL_PREFIX}' are the service's own (a "
            "child job's end)",
            problems=[Problem("a name the service keeps for itself", field="path.name")],
        )
    payload = body or {}
    if target.approval:
        payload = _approval_decision(payload, target.name)
    signal, created = await controller.signal_job(
        target.job, target.name, payload, principal.subject, idempotency_key
    )
    return SignalOut.from_record(signal, duplicate=not created)


@router.get("/api/v1/approvals", summary="The open approvals the caller may decide, across jobs")
async def list_approvals(store: StoreDep, principal: CurrentUser, page: PageParams) -> Page[ApprovalOut]:
    """The caller's own jobs' approvals (everyone's for an admin), and those listing the caller as an
    approver; the longest waiting first."""
    found = [
        ApprovalOut(
            job_id=job.id,
            node_id=node_id,
            signal=wait.signal or node_id,
            message=wait.message,
            since=wait.since,
            deadline=wait.deadline,
        )
        for job in await all_jobs(store, status=JobStatus.RUNNING, waiting=True)
        for node_id, wait in open_approvals(job)
        if principal.may_access(job.owner) or principal.subject in wait.approvers
    ]
    found.sort(key=lambda approval: (approval.since, approval.job_id, approval.node_id))
    return Page[ApprovalOut](
        items=found[page.offset : page.offset + page.limit],
        total=len(found),
        offset=page.offset,
        limit=page.limit,
    )


def _approval_decision(payload: dict[str, Any], node_id: str) -> dict[str, Any]:
    try:
        return ApprovalDecision.model_validate(payload).model_dump()
    except ValidationError as exc:
        problems = [
            Problem(error["msg"], node_id=node_id, field="body." + ".".join(str(p) for p in error["loc"]))
            for error in exc.errors(include_url=False)
        ]
        raise InvalidRequestError(
            f'approval \'{node_id}\' takes {{"approved": true|false, "comment"?, "data"?}}: '
            + "; ".join(f"{p.field}: {p.message}" for p in problems),
            problems=problems,
        ) from None
