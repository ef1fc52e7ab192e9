"""Turn an exception into the ErrorInfo that is stored, streamed and shown."""

from __future__ import annotations

from engine.errors import NodeTimeoutError, WorkflowServiceError
from engine.records import ErrorInfo


def error_info(exc: BaseException) -> ErrorInfo:
    """Keeps the error's type and whether a retry could help; unexpected exceptions are not retried."""
    if isinstance(exc, WorkflowServiceError):
        return ErrorInfo(type=exc.code, message=exc.message, retryable=exc.retryable)
    if isinstance(exc, TimeoutError):
        return ErrorInfo(type=NodeTimeoutError.code, message=str(exc) or "timed out", retryable=True)
    return ErrorInfo(type="internal_error", message=f"{type(exc).__name__}: {exc}", retryable=False)
