"""The agent node: a model that calls tools until it is done, every model turn and tool call a durable step.

Each turn calls the model with the conversation so far and the tools as OpenAI functions, as an llm node
run in place: the llm node's client and retries, with the process's share of the cluster-wide provider
limiter (the job actor's, or the executor's for an agent in a map's graph), streamed text becoming the
job's `llm_token` events when `stream` is on. In place, not in an executor: a turn is one I/O wait of an
async actor either way, and the trip to an executor cost more than the rest of a step.

Each tool call's arguments are checked against the tool's JSON Schema; a call that fails the check, names
no tool, or whose node fails goes back to the model as a tool error message, and the model may correct it.
A valid call runs the tool's node (its config rendered with `{{args.x}}`) where that type runs: http and
llm in the executors, code in the sandbox as a Ray task, inline types in place; the calls of one turn run
at the same time unless `parallel_tool_calls` is false. The node stops when the model answers without
calling a tool, or after `max_steps` model turns (the tool calls of a turn past that are not run): then it
fails, or with `on_max_steps: "return_last"` returns the last answer.

A tool whose node waits (approval, wait, workflow) pauses the agent: the node returns the tool's wait as
its own, marked with the call, and the job waits as for any waiting node (holding no actor). The wait's
end (`finish_wait`) becomes the call's `arrival` step and the same attempt runs on, replaying its steps;
the tool's node type then decides the call's result from that arrival, as it would decide its own node's.
An approval tool's signal is `<agent node>.<turn>.<call>`.

The node orchestrates from the job's own actor, so recording a step is a commit there, not another round
trip: each answer and each tool result is recorded as it arrives (nodes/agent_turns.py names the steps),
and the agent goes on once it is stored before anything a crash must not repeat. Pure work does not wait:
a turn whose calls are all pure tools (transform...) runs them while its answer is being committed, and
their results, computed the same again after a crash, go with the next answer's commit instead of one of
their own; so such a step costs one commit, made while the next model call is under way.
The same attempt run again after a crash replays its steps: a finished model call is not made again, a
finished tool call does not run again, and one that was under way runs again with the same idempotency key,
`job:node:attempt:turn:call` (an http tool sends it as `Idempotency-Key`; a model turn's is
`job:node:attempt:turn`).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from engine.catalog import NodeCatalog
from engine.errors import NodeExecutionError, Problem, RetryableNodeError, WorkflowServiceError
from engine.failures import error_info
from engine.records import EventType, SignalRecord, WaitInfo
from engine.templating import ARGS_ROOT, TemplateContext, check_template_syntax, references
from nodes.agent_turns import (
    TOOL_NAME,
    arguments_validator,
    arrival_key,
    call_key,
    capped_output,
    conversation,
    parsed_arguments,
    schema_problem,
    shown_arguments,
    turn_key,
)
from nodes.base import NodeContext, NodeResult, NodeType
from nodes.llm import FORMAT_NAMES, LlmConfig, LlmNode, json_fields
from nodes.map import sum_usage
from nodes.waiting import WaitArrival, WaitFinisher

MAX_STEPS_CAP = 100
REFUSED_TOOL_TYPES = frozenset({"map", "agent", "loop"})
WAITING_CALL = "agent_call"
"""In the wait of a tool call that waits: the key of the call's `arrival` step."""
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


class OnMaxSteps(StrEnum):
    FAIL = "fail"  # the node fails with node_error
    RETURN_LAST = "return_last"  # the node returns the last answer


class ToolNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, description="The node type that runs a call of the tool.")
    config: dict[str, Any] = Field(default_factory=dict, description="Its config; templates read {{args.x}}.")


class AgentTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The function name the model calls: 1-64 letters, digits, '_' or '-'.")
    description: str = Field(default="", description="What the tool does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (draft 2020-12) of the call's arguments, an object.",
    )
    node: ToolNode

    @model_validator(mode="after")
    def _valid(self) -> AgentTool:
        if not TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r}: 1-64 letters, digits, '_' or '-'")
        problem = schema_problem(self.parameters)
        if problem is not None:
            raise ValueError(f"tool {self.name!r} parameters: {problem}")
        return self

    def as_function(self) -> dict[str, Any]:
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="The model name the provider knows.")
    prompt: str = Field(min_length=1, description="The task, as the user message; usually a template.")
    system: str | None = Field(default=None, description="An optional system message.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Unset: the provider's default.")
    max_tokens: int | None = Field(default=None, ge=1, description="Per model turn; unset: the provider's.")
    max_steps: int = Field(default=10, ge=1, le=MAX_STEPS_CAP, description="Model turns at most.")
    parallel_tool_calls: bool = Field(default=True, description="Run the tool calls of one turn at once.")
    response_format: str | dict[str, Any] | None = Field(
        default=None,
        description='As the llm node\'s: "json_object" (or a response_format object) asks for a JSON final '
        "answer, whose fields are then the output's `json`.",
    )
    on_max_steps: OnMaxSteps = Field(
        default=OnMaxSteps.FAIL,
        description='At max_steps with the model still calling tools: "fail" (node_error) or '
        '"return_last" (the last answer\'s text).',
    )
    tools: list[AgentTool] = Field(min_length=1, description="The tools the model may call.")
    stream: bool = Field(
        default=False, description="Stream the model's text to the job's events as llm_token."
    )
    api_key: SecretStr | None = Field(default=None, description="As the llm node's; never logged.")

    @model_validator(mode="after")
    def _unique_names(self) -> AgentConfig:
        names = [tool.name for tool in self.tools]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"tool names must be unique: {', '.join(twice)} more than once")
        if isinstance(self.response_format, str) and self.response_format not in FORMAT_NAMES:
            raise ValueError(
                f'response_format must be "text", "json_object" or an object, not {self.response_format!r}'
            )
        return self

    @field_serializer("api_key", when_used="json")
    def _ship_api_key(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    def turn(self, messages: list[dict[str, Any]]) -> LlmConfig:
        """The llm node's config of one model turn."""
        return LlmConfig(
            model=self.model,
            prompt=self.prompt,
            system=self.system,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            response_format=self.response_format,
            messages=messages,
            tools=[tool.as_function() for tool in self.tools],
            stream=self.stream,
            api_key=self.api_key,
        )


class AgentNode(NodeType[AgentConfig]):
    type_name = "agent"
    description = (
        "A model that calls tools (other nodes) until it answers; every model turn and tool call is a "
        "durable step, so a crash resumes at the step it was on. Output: text, json, steps, usage."
    )
    config_model = AgentConfig
    raw_fields = frozenset({"tools"})

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        from nodes.registry import default_registry

        return self.validate_config_in(config, default_registry())

    def validate_config_in(self, config: dict[str, Any], catalog: NodeCatalog) -> list[Problem]:
        problems = [
            Problem(problem.message, field=_INDEX.sub(r"[\1]", problem.field) if problem.field else None)
            for problem in super().validate_config(config)
        ]
        tools = config.get("tools")
        if isinstance(tools, list):
            for index, tool in enumerate(tools):
                node = tool.get("node") if isinstance(tool, dict) else None
                if isinstance(node, dict) and isinstance(node.get("type"), str):
                    problems.extend(_tool_problems(f"config.tools[{index}].node", node, catalog))
        return problems

    def templated_config(self, config: dict[str, Any], catalog: NodeCatalog) -> dict[str, Any]:
        """The tools' templates read the call's `args`, which validation cannot know; what else they read
        (the input, earlier nodes, secrets) stands in for them, so validation checks those."""
        view = super().templated_config(config, catalog)
        tools = config.get("tools")
        if isinstance(tools, list):
            read: dict[str, None] = {}
            for tool in tools:
                node = tool.get("node") if isinstance(tool, dict) else None
                if not (isinstance(node, dict) and node.get("type") in catalog.known_types()):
                    continue
                tool_config = node.get("config")
                tool_view = catalog.templated_config(
                    node["type"], tool_config if isinstance(tool_config, dict) else {}
                )
                if check_template_syntax(tool_view):
                    read[str(tool_view)] = None
                    continue
                read.update(
                    {f"{{{{{ref.text}}}}}": None for ref in references(tool_view) if ref.root != ARGS_ROOT}
                )
            view["tools"] = list(read)
        return view

    async def execute(self, config: AgentConfig, ctx: NodeContext) -> NodeResult:
        return await _Run(config, ctx).run()

    def finish_wait(self, wait: WaitInfo, arrival: WaitArrival) -> NodeResult:
        """A tool call's wait is over: what ended it becomes the call's `arrival` step, and the attempt
        runs on, the tool's node type deciding the call's result from it (nodes/waiting.py)."""
        key = wait.settings.get(WAITING_CALL)
        if not isinstance(key, str):
            raise NodeExecutionError("the agent's wait names no tool call")
        signal = arrival.signal.model_dump(mode="json") if arrival.signal is not None else None
        step = {"wait": wait.model_dump(mode="json"), "time": arrival.time.isoformat(), "signal": signal}
        return NodeResult(output=None, resume_steps={key: step})


def _tool_problems(where: str, node: dict[str, Any], catalog: NodeCatalog) -> list[Problem]:
    node_type: str = node["type"]
    if node_type not in catalog.known_types():
        return [Problem(f"unknown node type '{node_type}'", field=f"{where}.type")]
    if node_type in REFUSED_TOOL_TYPES:
        return [Problem(f"a tool cannot be a {node_type} node", field=f"{where}.type")]
    config = node.get("config", {})
    if not isinstance(config, dict):
        return []
    if catalog.routing_targets(node_type, config):
        return [
            Problem(
                f"a {node_type} node routes to successors, which a tool has none of", field=f"{where}.type"
            )
        ]
    return [
        Problem(message, field=f"{where}.{field}" if field else where)
        for field, message in catalog.config_problems(node_type, config)
    ]


class _Run:
    """One run of an attempt: replays the steps it finds, makes and records the rest."""

    def __init__(self, config: AgentConfig, ctx: NodeContext) -> None:
        self.config, self.ctx = config, ctx
        self.tools = {tool.name: tool for tool in config.tools}
        self.validators = {tool.name: arguments_validator(tool.parameters) for tool in config.tools}
        self.registry = ctx.services.registry
        self.launch = ctx.services.run_node or _run_in_place

    async def run(self) -> NodeResult:
        answers: list[dict[str, Any]] = []
        results: list[list[dict[str, Any]]] = []
        for turn in range(self.config.max_steps):
            answer = self.ctx.steps.get(turn_key(turn))
            if answer is None:
                answer = await self._model_turn(turn, conversation(answers, results))
            answers.append(answer)
            if not answer["tool_calls"]:
                return self._result(answers, results, final=True)
            if turn + 1 == self.config.max_steps:
                break
            outcome = await self._tool_calls(turn, answer["tool_calls"])
            if isinstance(outcome, WaitInfo):
                return NodeResult(output=None, wait=outcome)
            results.append(outcome)
        if self.config.on_max_steps is OnMaxSteps.FAIL:
            raise NodeExecutionError(
                f"agent node '{self.ctx.node_id}' reached max_steps ({self.config.max_steps}) with the model "
                "still calling tools"
            )
        not_run = {"error": f"not run: the agent reached max_steps ({self.config.max_steps})"}
        results.append([not_run for _ in answers[-1]["tool_calls"]])
        return self._result(answers, results, final=False)

    async def _model_turn(self, turn: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
        llm = self.registry.get(LlmNode.type_name)
        result = await llm.execute(self.config.turn(messages), self.ctx.for_step(str(turn)))
        output = result.output
        answer = {
            "text": output["text"],
            "model": output["model"],
            "tool_calls": output.get("tool_calls", []),
            "usage": result.usage,
        }
        names = [call["name"] for call in answer["tool_calls"]]
        event = (EventType.AGENT_STEP, {"step": turn, "tool_calls": names, "usage": result.usage})
        recorded: dict[str, Any] = await self.ctx.steps.record_soon(turn_key(turn), answer, event)
        return recorded

    async def _tool_calls(self, turn: int, calls: list[dict[str, Any]]) -> list[dict[str, Any]] | WaitInfo:
        """The turn's tool results in call order, or the wait of the first call that waits. With parallel
        calls the calls that do not wait run at once, then those that do, one at a time."""
        if not all(self._pure(call) for call in calls):
            await self.ctx.steps.stored()  # the answer is durable before a tool does anything twice
        results: dict[int, dict[str, Any]] = {}
        order: list[int] = list(range(len(calls)))
        if self.config.parallel_tool_calls:
            at_once = [index for index, call in enumerate(calls) if not self._waits(call)]
            async with asyncio.TaskGroup() as group:
                tasks = {
                    index: group.create_task(self._tool_call(turn, index, calls[index])) for index in at_once
                }
            results = {index: _finished(task.result()) for index, task in tasks.items()}
            order = [index for index in order if index not in results]
        for index in order:
            outcome = await self._tool_call(turn, index, calls[index])
            if isinstance(outcome, WaitInfo):
                return outcome
            results[index] = outcome
        return [results[index] for index in range(len(calls))]

    def _waits(self, call: dict[str, Any]) -> bool:
        tool = self.tools.get(call["name"])
        return tool is not None and self.registry.get(tool.node.type).waits

    def _pure(self, call: dict[str, Any]) -> bool:
        """Whether the call's result comes out the same when computed again (a pure tool's, such as a
        transform's, or a call that names no tool): its step is then not waited for (nodes/steps.py)."""
        tool = self.tools.get(call["name"])
        return tool is None or self.registry.get(tool.node.type).pure

    async def _tool_call(self, turn: int, index: int, call: dict[str, Any]) -> dict[str, Any] | WaitInfo:
        key = call_key(turn, index)
        done: dict[str, Any] | None = self.ctx.steps.get(key)
        if done is not None:
            return done
        arrival = self.ctx.steps.get(arrival_key(turn, index))
        if arrival is not None:
            result = self._waited(call, arrival)
        else:
            outcome = await self._run_tool(turn, index, call)
            if isinstance(outcome, WaitInfo):
                return outcome
            result = outcome
        data = {"step": turn, "call_id": call["id"], "name": call["name"], **result}
        data.pop("usage", None)
        event = (EventType.TOOL_CALL_FINISHED, data)
        if self._pure(call) and arrival is None:
            recomputable: dict[str, Any] = await self.ctx.steps.record_recomputable(key, result, event)
            return recomputable
        recorded: dict[str, Any] = await self.ctx.steps.record(key, result, event)
        return recorded

    async def _run_tool(self, turn: int, index: int, call: dict[str, Any]) -> dict[str, Any] | WaitInfo:
        """Run the call's tool: its result, or the wait the tool's node starts (approval, wait, workflow),
        marked as this call's so that its outcome becomes the call's `arrival` step."""
        tool = self.tools.get(call["name"])
        if tool is None:
            return {
                "error": f"there is no tool named {call['name']!r}; the tools are {', '.join(self.tools)}"
            }
        args, problem = parsed_arguments(call["arguments"], self.validators[tool.name])
        if args is None:
            return {"error": problem}
        node_type = self.registry.get(tool.node.type)
        if node_type.waits and not self.ctx.steps.durable:
            return {
                "error": f"the {tool.node.type} tool waits, which only an agent that is a job's own node can "
                "do (not one in a map's or a loop's graph)"
            }
        started = {"step": turn, "call_id": call["id"], "name": tool.name, "arguments": args}
        await self.ctx.steps.announce(EventType.TOOL_CALL_STARTED, started)
        scope = TemplateContext(
            input=self.ctx.scope.input,
            nodes=self.ctx.scope.nodes,
            secrets=self.ctx.scope.secrets,
            locals={ARGS_ROOT: args},
        )
        try:
            config = node_type.render_config(tool.node.config, scope, f"{self.ctx.node_id}.{tool.name}")
            result = await self.launch(node_type, config, self.ctx.for_step(str(turn), str(index)))
        except Exception as exc:
            return _tool_error(exc)
        if result.wait is not None:
            settings = {**result.wait.settings, WAITING_CALL: arrival_key(turn, index)}
            return result.wait.model_copy(update={"settings": settings})
        return _kept(result)

    def _waited(self, call: dict[str, Any], arrival: dict[str, Any]) -> dict[str, Any]:
        """The result of a call whose tool waited, as its node type decides it from what ended the wait."""
        node_type = self.registry.get(self.tools[call["name"]].node.type)
        try:
            if not isinstance(node_type, WaitFinisher):
                raise TypeError(f"the {node_type.type_name} tool has no wait to end")
            signal = arrival.get("signal")
            ended = WaitArrival(
                datetime.fromisoformat(arrival["time"]),
                SignalRecord.model_validate(signal) if signal is not None else None,
            )
            result = node_type.finish_wait(WaitInfo.model_validate(arrival["wait"]), ended)
        except Exception as exc:
            return _tool_error(exc)
        return _kept(result)

    def _result(
        self, answers: list[dict[str, Any]], results: list[list[dict[str, Any]]], *, final: bool
    ) -> NodeResult:
        steps = []
        for turn, answer in enumerate(answers):
            turn_results = results[turn] if turn < len(results) else []
            calls = [
                {
                    "id": call["id"],
                    "name": call["name"],
                    "arguments": shown_arguments(call["arguments"]),
                    **{k: v for k, v in result.items() if k != "usage"},
                }
                for call, result in zip(answer["tool_calls"], turn_results, strict=True)
            ]
            steps.append({"tool_calls": calls, "usage": answer["usage"]})
        usage = sum_usage(
            [answer["usage"] for answer in answers] + [r.get("usage") for rs in results for r in rs]
        )
        text = answers[-1]["text"]
        output: dict[str, Any] = {"text": text, "steps": steps, "usage": usage}
        if self.config.turn([]).wants_json:
            fields = json_fields(text)
            if fields is None and final:
                raise RetryableNodeError(
                    f"agent node '{self.ctx.node_id}': the model was asked for a JSON object but answered "
                    f"with other text: {text[:200]!r}"
                )
            if fields is not None:
                output["json"] = fields
        return NodeResult(output=output, usage=usage)


def _tool_error(exc: Exception) -> dict[str, Any]:
    """A tool call that failed, as its step keeps it and the model reads it: `<error type>: <message>`."""
    if isinstance(exc, WorkflowServiceError):
        return {"error": f"{exc.code}: {exc.message}"}
    info = error_info(exc)
    return {"error": f"{info.type}: {info.message}"}


def _kept(result: NodeResult) -> dict[str, Any]:
    """A tool's result as its step keeps it: the output (capped), and its usage when it made LLM calls."""
    kept: dict[str, Any] = {"output": capped_output(result.output)}
    if result.usage:
        kept["usage"] = result.usage
    return kept


def _finished(outcome: dict[str, Any] | WaitInfo) -> dict[str, Any]:
    if isinstance(outcome, WaitInfo):
        raise TypeError("a tool that does not wait started a wait")
    return outcome


async def _run_in_place(node: NodeType[Any], config: BaseModel, ctx: NodeContext) -> NodeResult:
    """Where no job runs the agent's nodes (a map's sub-graph in an executor, a node test): here."""
    return await node.execute(config, ctx)
