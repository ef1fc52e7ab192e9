"""Runs nodes where their type says: inline in the job actor, in an executor actor, or as a Ray task an
executor owns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from actors.ray_runtime.executor_pool import ExecutorPool
from actors.ray_runtime.map_on_ray import RayFanOut
from actors.ray_runtime.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.map import FanOut


class RayLauncher:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self.fan_out: FanOut = RayFanOut(executors, workflow_name, runtime)

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is Execution.INLINE:
            return await node.execute(config, ctx)
        return await self._executors.run(node, config, ctx, self._workflow_name)
