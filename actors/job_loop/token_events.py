"""Streamed LLM text as a job's `llm_token` events, published straight to the event bus (sequence 0).

Tokens are best-effort live output, not durable state: they bypass the job's checkpoint and event
numbering, a replay may lack some, and one that cannot be published is dropped with a warning. The node's
output, checkpointed as usual, holds the whole text. Executors emit them for the llm nodes they run, the
job's own actor for the model turns of its agents.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine.errors import StorageUnavailableError
from engine.records import EventType, JobEvent
from nodes.services import TokenSink

logger = logging.getLogger(__name__)


def token_emitter(
    publish: Callable[[JobEvent], Awaitable[Any]], job_id: str, workflow_id: str, node_id: str, attempt: int
) -> TokenSink:
    """A sink that publishes each piece of one attempt's streamed text, numbered from 0 (`index`)."""
    index = 0

    async def emit(text: str) -> None:
        nonlocal index
        event = JobEvent(
            sequence=0,
            type=EventType.LLM_TOKEN,
            job_id=job_id,
            workflow_id=workflow_id,
            node_id=node_id,
            data={"index": index, "text": text, "attempt": attempt},
        )
        index += 1
        try:
            await publish(event)
        except StorageUnavailableError as exc:
            logger.warning("dropped an llm_token event of job %s: %s", job_id, exc)

    return emit
