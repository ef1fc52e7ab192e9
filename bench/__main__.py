"""`python -m bench [--workloads a,b]`: run workloads, print a table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from bench import (
    agent,
    chain,
    children,
    children_cluster,
    code_nodes,
    fanout,
    gateway_workers,
    jobs,
    limits,
    recovery,
    rest,
    scale,
    schedules,
    waits,
)

WORKLOADS: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
    "chain100": chain.run,
    "chain100-inline": chain.run_inline,
    "fanout1000": fanout.run,
    "jobs100-dedicated": jobs.run_dedicated,
    "jobs-reuse": jobs.run_reuse,
    "recovery": recovery.run,
    "rest": rest.run,
    "waits": waits.run,
    "children": children.run,
    "children-dedicated": children_cluster.run,
    "schedules": schedules.run,
    "agent": agent.run,
    "code": code_nodes.run,
    "limits": limits.run,
    "gateway-workers": gateway_workers.run,
    "scale": scale.run,
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SETTLED_CPU_PERCENT = 15.0
SETTLE_LIMIT_S = 60.0


async def settle(limit_s: float = SETTLE_LIMIT_S) -> float:
    """Wait until the machine is nearly idle (the previous workload's Ray instance takes seconds to wind
    down), at most `limit_s`; return the CPU use seen last, in percent of the whole machine."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        busy = await asyncio.to_thread(psutil.cpu_percent, 1.0)
        if busy <= SETTLED_CPU_PERCENT or loop.time() > deadline:
            return float(busy)


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'workload':<20} {'met':<5} {'target':<48} figures"]
    for name, figures in results.items():
        shown = ", ".join(
            f"{k}={v}" for k, v in figures.items() if k not in ("target", "target_met", "floor_what")
        )
        lines.append(
            f"{name:<20} {figures.get('target_met', '-')!s:<5} {figures.get('target', ''):<48} {shown}"
        )
    return "\n".join(lines)


async def main(names: list[str], settle_limit_s: float = SETTLE_LIMIT_S) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        busy = await settle(settle_limit_s)
        print(f"{name}: starting with the machine {busy:.0f}% busy", flush=True)
        outcome = await WORKLOADS[name]()
        produced = outcome if all(isinstance(v, dict) for v in outcome.values()) else {name: outcome}
        for produced_name, figures in produced.items():
            results[produced_name] = figures
            print(f"{produced_name}: {figures}", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--settle-limit",
        type=float,
        default=SETTLE_LIMIT_S,
        help=f"seconds each workload waits at most for an idle machine (default {SETTLE_LIMIT_S:.0f})",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    chosen = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    outcome = asyncio.run(main(chosen, args.settle_limit))
    print(table(outcome))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"workloads": outcome}, indent=2, default=str))
    print(f"wrote {args.out}")
