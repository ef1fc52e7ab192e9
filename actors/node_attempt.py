"""One attempt of a node, awaited under its timeout and reported as the scheduling step's event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from engine.errors import NodeTimeoutError
from engine.failures import error_info
from engine.records import ErrorInfo
from engine.scheduler import NodeFailed, NodeSucceeded
from nodes.base import NodeResult


async def attempt_event(
    node_id: str, work: Awaitable[NodeResult], timeout_s: float | None, clock: Callable[[], datetime]
) -> NodeSucceeded | NodeFailed:
    """Success, failure (type and retryability kept) or a timeout reported as `node_timeout`;
    cancellation propagates."""
    try:
        result = await asyncio.wait_for(work, timeout=timeout_s)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        error = ErrorInfo(
            type=NodeTimeoutError.code,
            retryable=True,
            message=f"node '{node_id}' timed out after {timeout_s} s",
        )
        return NodeFailed(node_id, error, clock())
    except Exception as exc:
        return NodeFailed(node_id, error_info(exc), clock())
    return NodeSucceeded(node_id, result.output, clock(), result.inactive_targets, result.usage)
