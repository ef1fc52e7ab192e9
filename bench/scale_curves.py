"""A cost curve: the cost of one unit of work (a step, an item, a request, an event) at each size of the
work, and how much it grew from the first size to the last."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FLAT_RATIO = 1.5
"""A curve is flat when its last point's per-unit cost is at most this many times its first's."""


def ratio(points: Mapping[int, float]) -> float:
    """The last point's per-unit cost over the first's (points in increasing size)."""
    sizes = sorted(points)
    return points[sizes[-1]] / points[sizes[0]]


def curve(name: str, points: Mapping[int, float], digits: int = 3) -> dict[str, Any]:
    """The figures of one curve: `<name>` by size and `<name>_ratio`."""
    return {
        name: {str(size): round(points[size], digits) for size in sorted(points)},
        f"{name}_ratio": round(ratio(points), 3),
    }


def ratios_of(figures: Mapping[str, Any]) -> dict[str, float]:
    """Every curve's ratio among a row's figures."""
    return {key: value for key, value in figures.items() if key.endswith("_ratio")}


def flat(figures: Mapping[str, Any]) -> bool:
    return all(value <= FLAT_RATIO for value in ratios_of(figures).values())
