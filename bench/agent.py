"""agent: one agent node of 10 model turns (steps), 9 of them calling 3 tools in parallel, against the test
LLM server at 0 ms (in its own process, scripted with `--tool-rounds 9x3`), against the same conversation
made by a plain asyncio loop in the same run: httpx to the same server, the same tool work (three tiny
dicts per turn, as the transform tools build), the same messages.

The agent's extra cost per step is the model call's limiter permit, the tools' rendering and runs, and
the durable steps: every model answer committed to the store and published (the transform tools are
pure, so their results go with the next answer's commit). Per step: (agent node's duration - the loop's)
/ 10, medians of the rounds after a warm-up, the loop and the job in turns; on warm runners (reuse mode),
and with a fresh actor per job (dedicated mode).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from bench.fanout import llm_server
from bench.harness import create_workflow, median, service, warm_pool_ready

STEPS, CALLS = 10, 3
TARGET_MS = 5.0
MODES = (("reuse", 15), ("dedicated", 5))
"""Job actor modes and rounds of each: warm runners, which the target is for (like the plain loop's warm
client), and a fresh actor per job, whose first model call, template and store reads are cold."""
PARAMETERS = {"type": "object", "properties": {"turn": {"type": "integer"}, "call": {"type": "integer"}}}
TOOLS = [
    {
        "name": f"tool{i}",
        "description": f"tool number {i}",
        "parameters": PARAMETERS,
        "node": {
            "type": "transform",
            "config": {"template": {"tool": i, "turn": "{{args.turn}}", "call": "{{args.call}}"}},
        },
    }
    for i in range(CALLS)
]


def agent_workflow() -> dict[str, Any]:
    config = {"model": "bench", "prompt": "work through the task", "max_steps": STEPS, "tools": TOOLS}
    return {"name": "agent-bench", "nodes": [{"id": "agent", "type": "agent", "config": config}], "edges": []}


async def plain_loop(client: httpx.AsyncClient, url: str) -> float:
    """Seconds for the same conversation as a plain asyncio loop."""
    functions = [
        {"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters")}}
        for tool in TOOLS
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "work through the task"}]
    started = time.perf_counter()
    for _ in range(STEPS):
        body = {"model": "bench", "messages": messages, "tools": functions}
        reply = (await client.post(f"{url}/v1/chat/completions", json=body)).json()
        message = reply["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if not calls:
            break
        messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})

        async def work(call: dict[str, Any]) -> dict[str, Any]:
            args = json.loads(call["function"]["arguments"])
            tool = int(call["function"]["name"].removeprefix("tool"))
            return {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"tool": tool, **args})}

        messages.extend(await asyncio.gather(*(work(call) for call in calls)))
    return time.perf_counter() - started


async def run() -> dict[str, Any]:
    figures: dict[str, Any] = {"steps": STEPS, "tool_calls_per_step": CALLS}
    with llm_server(latency_s=0.0, tool_rounds=f"{STEPS - 1}x{CALLS}") as url:
        for mode, runs in MODES:
            floor, node_s, wall_s = await _rounds(url, mode, runs)
            suffix = "" if mode == "reuse" else f"_{mode}"
            figures |= {
                f"agent_node_s_median{suffix}": round(node_s, 4),
                f"job_wall_s_median{suffix}": round(wall_s, 4),
                f"floor{suffix}": round(floor, 4),
                f"per_step_ms_beyond_floor{suffix}": round((node_s - floor) / STEPS * 1000, 2),
            }
    per_step_ms = figures["per_step_ms_beyond_floor"]
    return {
        **figures,
        "floor_what": "the same 10 turns and 27 tool calls as a plain asyncio loop, httpx, same server",
        "target": f"< {TARGET_MS:g} ms per step beyond the floor, on a warm runner (reuse mode)",
        "target_met": per_step_ms < TARGET_MS,
    }


async def _rounds(url: str, mode: str, runs: int) -> tuple[float, float, float]:
    """Medians after a warm-up round, in seconds: the plain loop's, the agent node's, the job's."""
    floors, nodes, walls = [], [], []
    async with (
        service(MODEL_SERVICE_URL=url, WARM_POOL_SIZE=1, MAX_ACTIVE_JOBS=2, JOB_ACTOR_MODE=mode) as runtime,
        httpx.AsyncClient(timeout=30) as client,
    ):
        workflow_id = await create_workflow(runtime, agent_workflow())
        for _ in range(runs + 1):
            await warm_pool_ready(runtime)
            floors.append(await plain_loop(client, url))
            started = time.perf_counter()
            job = await runtime.controller.execute_workflow(workflow_id, {}, owner="bench")
            async for _ in runtime.bus.subscribe(job.id):
                pass
            walls.append(time.perf_counter() - started)
            done = await runtime.store.get_job(job.id)
            node = done.nodes["agent"]
            if done.status.value != "completed" or node.started_at is None or node.finished_at is None:
                raise RuntimeError(f"the agent job ended {done.status.value}: {done.error}")
            if len(node.output["steps"]) != STEPS:
                raise RuntimeError(f"the agent made {len(node.output['steps'])} steps, not {STEPS}")
            nodes.append((node.finished_at - node.started_at).total_seconds())
    return median(floors[1:]), median(nodes[1:]), median(walls[1:])
