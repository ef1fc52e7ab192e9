"""Every failure answers in one shape: `{"detail": ..., "errors": [{"node_id", "field", "message"}]}`.

The engine's error tree maps to statuses here, once: invalid input 422 (JSON nested too deep included),
unknown ids 404, illegal transitions and records stored but unreadable 409, a store or bus that is down
503. Request validation errors (bad query parameters, a body that is not JSON) use the same shape, and
an unexpected exception answers 500 in it too. The responses each route documents are built from
`documented` here, so the OpenAPI document names every status a route answers (the fuzz test holds it
to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from engine.errors import (
    ConditionError,
    ConflictError,
    InvalidRerunError,
    InvalidWorkflowError,
    JobCancelledError,
    NestingTooDeepError,
    NodeExecutionError,
    NotFoundError,
    Problem,
    StorageUnavailableError,
    TemplateError,
    UnreadableRecordError,
    WorkflowServiceError,
)


class InvalidRequestError(WorkflowServiceError):
    """A request the gateway refuses before it reaches the engine (a bad node config, a bad time range)."""

    code = "invalid_request"


STATUS_BY_ERROR: tuple[tuple[type[WorkflowServiceError], int], ...] = (
    (InvalidWorkflowError, 422),
    (InvalidRequestError, 422),
    (InvalidRerunError, 422),
    (TemplateError, 422),
    (ConditionError, 422),
    (NodeExecutionError, 422),
    (NestingTooDeepError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (UnreadableRecordError, 409),
    (JobCancelledError, 409),
    (StorageUnavailableError, 503),
)
RETRY_AFTER_S = 1


class ProblemOut(BaseModel):
    node_id: str | None = None
    field: str | None = None
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: Any
    errors: list[ProblemOut] = []


Responses = dict[int | str, dict[str, Any]]


def documented(status: int, description: str) -> Responses:
    """An error status for a route's `responses=`, answered in the one error shape."""
    return {status: {"model": ErrorBody, "description": description}}


ERROR_RESPONSES: Responses = {
    **documented(401, "Missing, malformed, expired or wrongly signed token"),
    **documented(422, "Invalid request (JSON nested past the limit included); `errors` lists every problem"),
    **documented(503, "The store or the event bus is unavailable; retry after Retry-After"),
}
"""What every authenticated route may answer."""
BODY_TOO_LARGE: Responses = documented(413, "The request body is larger than MAX_BODY_BYTES")
UNREADABLE: Responses = documented(409, "The record is stored but cannot be read (logged for the operator)")


def status_for(error: WorkflowServiceError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 400


def error_response(
    status: int,
    detail: Any,
    problems: Iterable[Problem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=[ProblemOut.model_validate(p.as_dict()) for p in problems])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=dict(headers or {}))


def request_problems(errors: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Pydantic's request errors, located as `body.config.template` or `query.limit`."""
    return [
        Problem(error["msg"], field=".".join(str(part) for part in error["loc"]) or None) for error in errors
    ]


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkflowServiceError)
    status = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.retryable and status == 503 else None
    return error_response(status, exc.message, exc.problems, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = request_problems(exc.errors())
    return error_response(422, f"invalid request: {len(problems)} problem(s)", problems)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """The server logs the exception (it is raised on after this answer)."""
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WorkflowServiceError, _service_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
