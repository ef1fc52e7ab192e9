"""The service's one error tree.

Every error keeps its type and says whether retrying the same work could succeed. Errors that
describe bad input carry `problems`: each names the node, the field and what is wrong, so the
gateway can answer with all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, pointing at where it is."""

    message: str
    node_id: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"node_id": self.node_id, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = ".".join(part for part in (self.node_id, self.field) if part)
        return f"{where}: {self.message}" if where else self.message


class WorkflowServiceError(Exception):
    """Base of every error the service raises on purpose."""

    retryable: bool = False
    code: str = "error"

    def __init__(self, message: str, *, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems: list[Problem] = problems or []

    def as_dict(self) -> dict[str, object]:
        return {"type": self.code, "message": self.message, "retryable": self.retryable}


class InvalidWorkflowError(WorkflowServiceError):
    """A workflow definition breaks one or more rules; `problems` lists all of them."""

    code = "invalid_workflow"

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        summary = "; ".join(str(p) for p in problems[:5])
        more = f" (and {count - 5} more)" if count > 5 else ""
        super().__init__(f"workflow definition has {count} problem(s): {summary}{more}", problems=problems)


class TemplateError(WorkflowServiceError):
    """A template could not be rendered: bad syntax, a path that does not resolve, too much output."""

    code = "template_error"


class ConditionError(WorkflowServiceError):
    """A condition expression is malformed or uses something that is not allowed."""

    code = "condition_error"


class NestingTooDeepError(WorkflowServiceError):
    """JSON nested deeper than a limit: a request body, a node's output, a document a store would write."""

    code = "nesting_too_deep"


class InvalidRerunError(WorkflowServiceError):
    """A re-run names what its job's workflow version does not have; `problems` lists every one."""

    code = "invalid_rerun"


class NotFoundError(WorkflowServiceError):
    code = "not_found"


class UnreadableRecordError(WorkflowServiceError):
    """A stored record that cannot be read back (damaged, or written before the store checked nesting)."""

    code = "unreadable_record"


class ConflictError(WorkflowServiceError):
    """The request is valid but the current state forbids it (lost version race, finished job)."""

    code = "conflict"


class NodeExecutionError(WorkflowServiceError):
    """A node's work failed. Subclasses decide whether a retry may help."""

    code = "node_error"


class RetryableNodeError(NodeExecutionError):
    """A transient failure (a 5xx, a 429, a dropped connection): retrying may succeed."""

    retryable = True
    code = "node_transient_error"


class NodeTimeoutError(NodeExecutionError):
    retryable = True
    code = "node_timeout"


class ChildJobError(NodeExecutionError):
    """A workflow node's child job failed or was cancelled: the node fails with `node_error`, and its
    retry starts a new child."""

    retryable = True


class WaitTimedOutError(NodeExecutionError):
    """A wait (approval, signal) reached its timeout and its node says to fail then; waiting again
    would not help."""

    code = "wait_timeout"


class StepTooLargeError(NodeExecutionError):
    """A node's durable step holds more than the store keeps for one step (engine/steps.py)."""

    code = "step_too_large"


class SandboxError(NodeExecutionError):
    """User code failed inside the sandbox or broke one of its limits."""

    code = "sandbox_error"


class JobCancelledError(WorkflowServiceError):
    code = "cancelled"


class StorageUnavailableError(WorkflowServiceError):
    retryable = True
    code = "storage_unavailable"
