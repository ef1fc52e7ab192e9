"""JSON shapes of a chosen depth, for the tests of the nesting limits."""

from __future__ import annotations

from typing import Any


def nested(depth: int, leaf: Any = 1) -> Any:
    """`leaf` inside `depth` objects: {"a": {"a": ... leaf}}."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def depth(value: Any) -> int:
    """How many objects and arrays nest in a parsed JSON value, counted plainly (recursively)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0
