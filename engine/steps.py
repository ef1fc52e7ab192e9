"""Durable steps of a node attempt: what one step may hold.

A node that makes several expensive or side-effecting calls (an agent's model turns and tool calls, a
loop's iterations) records each result as a step the moment it has it. The job commits the step into the
node's checkpoint (`NodeCheckpoint.steps`) through its one commit path, and a run of the same attempt
after a crash gets the steps back, so it skips what was done. A new attempt (a retry) starts with none.

A step's key names it within the attempt (`turn-3`, `turn-3.call_ab12`): letters, digits and `._:-`, at
most MAX_STEP_KEY_CHARS. Its value is JSON, at most MAX_STEP_CHARS characters of it: the node's checkpoint
holds every step of the attempt and is written whole with each one, so a node that may meet a larger value
(a tool's output) shortens it by its own documented rule before recording it, and a step above the limit
fails the node with `step_too_large`, naming the step.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import to_jsonable_python

from engine.errors import NodeExecutionError, StepTooLargeError

MAX_STEP_CHARS = 64 * 2**10
MAX_STEP_KEY_CHARS = 200
MAX_STEPS = 1_000
"""Steps one attempt may record: more means a node that loops without bound."""
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def storable_step(node_id: str, key: str, value: Any, recorded: int) -> Any:
    """`value` as JSON data, ready to store as step `key` of node `node_id`, which has `recorded` steps
    already; NodeExecutionError for a bad key or too many steps, StepTooLargeError for too large a value."""
    if len(key) > MAX_STEP_KEY_CHARS or not _KEY.match(key):
        raise NodeExecutionError(
            f"node '{node_id}' named a step {key[:50]!r}: a step key is 1-{MAX_STEP_KEY_CHARS} letters, "
            "digits or '._:-'"
        )
    if recorded >= MAX_STEPS:
        raise NodeExecutionError(f"node '{node_id}' recorded more than {MAX_STEPS} steps in one attempt")
    data = to_jsonable_python(value, fallback=str)
    size = len(json.dumps(data, separators=(",", ":")))
    if size > MAX_STEP_CHARS:
        raise StepTooLargeError(
            f"node '{node_id}': step {key!r} holds {size} characters of JSON, more than the "
            f"{MAX_STEP_CHARS} a step may hold"
        )
    return data
