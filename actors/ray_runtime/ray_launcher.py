"""Runs nodes where their type says: inline in the job actor, in an executor actor, or as a Ray task."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from actors.ray_runtime.executor_pool import ExecutorPool
from actors.ray_runtime.map_on_ray import RayFanOut
from actors.ray_runtime.remote_calls import outcome_result, remote_call, run_as_task
from actors.ray_runtime.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.map import FanOut


class RayLauncher:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self._runtime = runtime
        self.fan_out: FanOut = RayFanOut(executors, workflow_name, runtime)

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is Execution.INLINE:
            return await node.execute(config, ctx)
        if node.execution is Execution.CPU:
            return await run_as_task(self._runtime, self._workflow_name, node, config, ctx)
        executor = await self._executors.pick((ctx.job_id, ctx.node_id))
        call = remote_call(self._runtime, node.type_name, ctx, config.model_dump(mode="json"))
        outcome = await executor.execute(call).stopped_with_caller(force_cancel=False)
        return outcome_result(outcome, ctx)
