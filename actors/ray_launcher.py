"""Runs nodes where their type says: inline in the job actor, in an executor actor, or as a Ray task."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from actors import ray_api
from actors.executor_pool import ExecutorPool
from actors.ray_fan_out import RayFanOut
from actors.remote_nodes import RemoteOutcome, outcome_result, remote_call, run_cpu_attempt
from actors.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeResult, NodeType


class RayLauncher:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self._runtime = runtime
        self.fan_out = RayFanOut(executors, workflow_name, runtime)

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is Execution.INLINE:
            return await node.execute(config, ctx)
        call = remote_call(self._runtime, node.type_name, ctx, config.model_dump(mode="json"))
        if node.execution is Execution.IO:
            executor = await self._executors.pick((ctx.job_id, ctx.node_id))
            ref = ray_api.call(executor, "execute", call)
            outcome: RemoteOutcome = await ray_api.wait_ref(ref, force_cancel=False)
        else:
            outcome = await run_cpu_attempt(call, f"{self._workflow_name}:{ctx.node_id}")
        return outcome_result(outcome, ctx)
