"""Runs nodes where their type says: inline in the job actor, in an executor actor, or as a Ray task."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from actors import ray_api
from actors.executor_pool import ExecutorPool
from actors.ray_fan_out import RayFanOut
from actors.remote_nodes import RemoteCall, RemoteNodeError, RemoteOutcome, run_cpu_node
from actors.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeResult, NodeType


class RayLauncher:
    def __init__(self, executors: ExecutorPool, workflow_name: str, runtime: RuntimeConfig) -> None:
        self._executors = executors
        self._workflow_name = workflow_name
        self._node_plugins = runtime.node_plugins
        self._settings = runtime.node_settings
        self.fan_out = RayFanOut(executors, workflow_name, runtime)

    async def run(self, node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
        if node.execution is Execution.INLINE:
            return await node.execute(config, ctx)
        call = RemoteCall(
            node_type=node.type_name,
            config=config.model_dump(mode="json"),
            job_id=ctx.job_id,
            workflow_id=ctx.workflow_id,
            node_id=ctx.node_id,
            attempt=ctx.attempt,
            predecessors=ctx.predecessors,
            node_plugins=self._node_plugins,
            settings=self._settings,
        )
        if node.execution is Execution.IO:
            executor = await self._executors.pick((ctx.job_id, ctx.node_id))
            ref = ray_api.call(executor, "execute", call)
            outcome: RemoteOutcome = await ray_api.wait_ref(ref, force_cancel=False)
        else:
            name = f"{self._workflow_name}:{ctx.node_id}"
            ref = ray_api.submit_task(run_cpu_node, call, name=name)
            outcome = await ray_api.wait_ref(ref, force_cancel=True)
        for level, message, data in outcome.logs:
            ctx.log(level, message, data)
        if outcome.error is not None:
            raise RemoteNodeError(outcome.error)
        assert outcome.result is not None
        return outcome.result
