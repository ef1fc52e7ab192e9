"""scale: cost as work grows, as curves whose points are each measured in the same run; each curve is
reported as the ratio of its last point's per-unit cost to its first's (bench/scale_curves.py).

- scale-chain: a chain of 10 / 100 / 1,000 llm steps (bench/scale_work.py), per step;
- scale-map: a map of 1,000 / 10,000 / 100,000 llm items at a cap of 1,000, time and memory per item;
- scale-store: listing and analytics with 100 / 10,000 / 100,000 stored jobs (bench/scale_store.py);
- scale-sse: a job's stream of 100 / 10,000 events replayed over SSE (bench/scale_sse.py);
- scale: every ratio, and whether all are flat and the 100,000-item map kept within its memory.
"""

from __future__ import annotations

from typing import Any

from bench import scale_work
from bench.scale_curves import FLAT_RATIO, ratios_of
from bench.scale_sse import sse_curve
from bench.scale_store import store_curves, stored_work


async def run() -> dict[str, dict[str, Any]]:
    rows = await scale_work.run()
    async with stored_work() as work:
        rows["scale-store"] = await store_curves(work)
        rows["scale-sse"] = await sse_curve(work)
    ratios = {
        f"{row}.{name}": value for row, figures in rows.items() for name, value in ratios_of(figures).items()
    }
    rows["scale"] = {
        "ratios": ratios,
        "not_flat": sorted(name for name, value in ratios.items() if value > FLAT_RATIO),
        "target": f"every ratio <= {FLAT_RATIO}; the 100,000-item map within "
        f"{scale_work.MAP_MEMORY_LIMIT_MB} MB of service RSS",
        "target_met": all(figures["target_met"] for figures in rows.values()),
    }
    return rows
