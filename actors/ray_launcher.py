"""Runs nodes where their type says: inline in the job actor, in an executor actor, or as a Ray task."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from actors import ray_api
from actors.executor_pool import ExecutorPool
from actors.ray_fan_out import RayFanOut
from actors.remote_nodes import RemoteCall, RemoteNodeError, RemoteOutcome, remote_call, run_cpu_node
from actors.runtime_config import RuntimeConfig
from nodes.base import Execution, NodeContext, NodeResult, NodeType

logger = logging.getLogger(__name__)

WORKER_LOSS_RESUBMITS = 1
"""How many times an attempt whose Ray worker died under it is run again on another worker."""


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
            outcome = await self._run_task(call, f"{self._workflow_name}:{ctx.node_id}")
        for level, message, data in outcome.logs:
            ctx.log(level, message, data)
        if outcome.error is not None:
            raise RemoteNodeError(outcome.error)
        assert outcome.result is not None
        return outcome.result

    async def _run_task(self, call: RemoteCall, name: str) -> RemoteOutcome:
        """Run a CPU attempt as a Ray task, again on another worker if its worker dies under it.

        Ray's force-cancel kills the cancelled task's child processes (its sandbox) before the worker exits.
        In between, the task sees its sandbox gone and returns, the owner counts the worker as free and
        pushes it the next queued task of the same kind (a retry, or another job's node in reuse mode),
        which then dies with the worker: WorkerCrashedError for a task nobody cancelled. Its node never
        ran to an end and a node attempt may run again (same attempt, same idempotency key), so the
        attempt is submitted again instead of failing; the node's timeout still bounds it as a whole."""
        resubmits_left = WORKER_LOSS_RESUBMITS
        while True:
            ref = ray_api.submit_task(run_cpu_node, call, name=name)
            try:
                return await ray_api.wait_ref(ref, force_cancel=True)
            except ray_api.WorkerLost as lost:
                if resubmits_left == 0:
                    raise
                resubmits_left -= 1
                logger.warning(
                    "the worker running %s (job %s, attempt %d) died under it; running it on another: %s",
                    name,
                    call.job_id,
                    call.attempt,
                    lost,
                    extra={"job_id": call.job_id},
                )
