"""Jobs run by the Ray-free job runner in tests: node types that fail, sleep, hold a secret or die with their
process, and how a test builds a workflow and starts its job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr, field_serializer

from actors.job_loop.job_runner import JobRunner, RunnerServices
from engine.dag import Dag
from engine.errors import RetryableNodeError
from engine.models import WorkflowDefinition
from engine.records import EventType, JobRecord, NodeStatus
from nodes.base import NodeContext, NodeResult, NodeType


class FlakyConfig(BaseModel):
    failures: int = 0
    value: Any = None


class FlakyNode(NodeType[FlakyConfig]):
    """Fails with a retryable error `failures` times per job, then returns `value`."""

    type_name = "flaky"
    description = "test node"
    config_model = FlakyConfig
    calls: ClassVar[dict[str, int]] = {}

    async def execute(self, config: FlakyConfig, ctx: NodeContext) -> NodeResult:
        call = count_run(FlakyNode.calls, ctx)
        ctx.log("info", "flaky called", {"call": call, "key": ctx.idempotency_key})
        if call <= config.failures:
            raise RetryableNodeError(f"transient failure {call}")
        return NodeResult(output={"value": config.value, "attempt": ctx.attempt})


def count_run(runs: dict[str, int], ctx: NodeContext) -> int:
    """Count one more run of the context's node in its job (key `job_id:node_id`); how many there were."""
    key = f"{ctx.job_id}:{ctx.node_id}"
    runs[key] = runs.get(key, 0) + 1
    return runs[key]


class SleepConfig(BaseModel):
    seconds: float


class SleepNode(NodeType[SleepConfig]):
    type_name = "sleep"
    description = "test node"
    config_model = SleepConfig
    started: ClassVar[dict[str, float]] = {}
    finished: ClassVar[dict[str, float]] = {}

    async def execute(self, config: SleepConfig, ctx: NodeContext) -> NodeResult:
        loop = asyncio.get_running_loop()
        SleepNode.started[ctx.node_id] = loop.time()
        await asyncio.sleep(config.seconds)
        SleepNode.finished[ctx.node_id] = loop.time()
        return NodeResult(output=config.seconds)


class KeyedConfig(BaseModel):
    key: SecretStr
    note: str = ""

    @field_serializer("key", when_used="json")
    def _ship_key(self, value: SecretStr) -> str:
        """As the LLM node's api_key: whole in JSON, for the executor it travels to."""
        return value.get_secret_value()


class KeyedNode(NodeType[KeyedConfig]):
    """Fails naming its note, so its rendered config is stored with an error."""

    type_name = "keyed"
    description = "test node"
    config_model = KeyedConfig

    async def execute(self, config: KeyedConfig, ctx: NodeContext) -> NodeResult:
        raise ValueError(f"refused: {config.note}")


class ProcessDied(BaseException):
    """Stands for the job actor's process dying in the middle of a node's work: like that death, no handler
    in the job's code sees it (a BaseException, not an Exception that would fail the node)."""


class CountedConfig(BaseModel):
    value: Any = None
    die_once: bool = False


class CountedNode(NodeType[CountedConfig]):
    """A pure node (as transform: it returns `value`), so it is folded into the commit that starts it;
    counts its computations per (job, node), and with `die_once` its process dies in the first one."""

    type_name = "counted"
    pure = True
    description = "test node"
    config_model = CountedConfig
    computed: ClassVar[dict[str, int]] = {}

    async def execute(self, config: CountedConfig, ctx: NodeContext) -> NodeResult:
        if count_run(CountedNode.computed, ctx) == 1 and config.die_once:
            raise ProcessDied(f"died computing node '{ctx.node_id}'")
        return NodeResult(output=config.value)


class StepperConfig(BaseModel):
    steps: list[str]
    hold_after: str | None = None
    """Block (until cancelled) once this step is recorded."""


class StepperNode(NodeType[StepperConfig]):
    """Does each of `steps` once per attempt as a durable step, skipping those its journal holds; counts
    the work done per (job, step)."""

    type_name = "stepper"
    description = "test node"
    config_model = StepperConfig
    work: ClassVar[dict[str, int]] = {}

    async def execute(self, config: StepperConfig, ctx: NodeContext) -> NodeResult:
        for name in config.steps:
            if name not in ctx.steps:
                key = f"{ctx.job_id}:{name}"
                StepperNode.work[key] = StepperNode.work.get(key, 0) + 1
                event = (EventType.NODE_PROGRESS, {"step": name})
                await ctx.steps.record(name, {"done": name, "key": ctx.for_step(name).idempotency_key}, event)
            if name == config.hold_after:
                await asyncio.Event().wait()
        return NodeResult(output=[ctx.steps.get(name) for name in config.steps])


def definition(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(
        {"name": "test", "nodes": nodes, "edges": [{"source": s, "target": t} for s, t in edges]}
    )


async def start_job(services: RunnerServices, wf: WorkflowDefinition, job_input: dict[str, Any]) -> JobRunner:
    workflow = await services.store.create_workflow("alice", wf)
    job = await services.store.create_job(
        JobRecord(
            id=f"job-{uuid.uuid4().hex}",
            owner="alice",
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            input=job_input,
        )
    )
    return JobRunner(services, job, Dag.from_definition(workflow.definition))


async def events_of(services: RunnerServices, job_id: str) -> list[Any]:
    return [event async for event in services.bus.subscribe(job_id)]


async def node_status(services: RunnerServices, job_id: str, node_id: str, status: NodeStatus) -> bool:
    """Whether the store holds `node_id` of the job in `status` (a running node is checkpointed so before
    it starts)."""
    node = (await services.store.get_job(job_id)).nodes.get(node_id)
    return node is not None and node.status is status
