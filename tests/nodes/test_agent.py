"""The agent node without Ray: its pure parts as tables, its validation, and whole runs through the job
loop (real SQLite, real Redis) against the real test LLM server with inline tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from actors.job_loop.job_runner import JobRunner, RunnerServices
from engine.dag import Dag
from engine.records import EventType, JobStatus, NodeStatus, SignalRecord
from engine.templating import TemplateContext
from nodes.agent import AgentNode
from nodes.agent_turns import (
    MAX_TOOL_OUTPUT_CHARS,
    arguments_validator,
    capped_output,
    conversation,
    parsed_arguments,
    schema_problem,
)
from nodes.llm import LlmConfig
from nodes.llm_client import close_shared_clients
from nodes.registry import default_registry
from nodes.settings import NodeSettings
from tests.support.node_services import standalone_context, standalone_services
from tests.support.openai_server import OpenAITestServer, ScriptedReply
from tests.support.runner_jobs import definition, events_of, start_job

pytestmark = pytest.mark.timeout(30)

ADD = {
    "name": "add",
    "description": "adds two numbers",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
    "node": {"type": "transform", "config": {"template": {"sum": "{{args.a + args.b}}"}}},
}
SHOUT = {
    "name": "shout",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "node": {"type": "transform", "config": {"template": "{{args.text | upper}}!"}},
}


@pytest.mark.parametrize(
    ("arguments", "value", "problem"),
    [
        ('{"a": 1, "b": 2}', {"a": 1, "b": 2}, None),
        ("", None, "arguments: 'a' is a required property; arguments: 'b' is a required"),
        ("{not json", None, "the arguments are not JSON (Expecting property name"),
        ("[1, 2]", None, "must be a JSON object, not list"),
        ('{"a": "x", "b": 2}', None, "arguments.a: 'x' is not of type 'number'"),
        ('{"a": 1}', None, "'b' is a required property"),
    ],
)
def test_arguments_are_checked_against_the_tools_schema(
    arguments: str, value: Any, problem: str | None
) -> None:
    parsed, why = parsed_arguments(arguments, arguments_validator(ADD["parameters"]))
    assert parsed == value
    if problem is None:
        assert why is None
    else:
        assert why is not None and (problem in why or why.startswith(problem)), why


def test_an_empty_argument_text_is_an_empty_object() -> None:
    assert parsed_arguments("", arguments_validator({"type": "object"})) == ({}, None)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "number"}}}, None),
        ({"type": "array"}, '"type" must be "object"'),
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "not a valid JSON Schema"),
    ],
)
def test_a_tools_parameters_must_be_a_schema_of_an_object(
    schema: dict[str, Any], problem: str | None
) -> None:
    found = schema_problem(schema)
    assert found == problem if problem is None else problem in (found or "")


def test_the_conversation_is_each_answer_then_its_calls_results_in_call_order() -> None:
    answers = [
        {
            "text": "",
            "tool_calls": [
                {"id": "c1", "name": "add", "arguments": '{"a":1}'},
                {"id": "c2", "name": "x", "arguments": "{}"},
            ],
        },
        {"text": "thinking", "tool_calls": [{"id": "c3", "name": "shout", "arguments": '{"text":"hi"}'}]},
    ]
    results = [[{"output": {"sum": 3}}, {"error": "no tool"}], [{"output": "HI!"}]]
    assert conversation(answers, results) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "x", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"sum": 3}'},
        {"role": "tool", "tool_call_id": "c2", "content": "error: no tool"},
        {
            "role": "assistant",
            "content": "thinking",
            "tool_calls": [
                {"id": "c3", "type": "function", "function": {"name": "shout", "arguments": '{"text":"hi"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c3", "content": "HI!"},
    ]


@pytest.mark.parametrize(
    ("output", "kept"),
    [
        ({"a": 1}, {"a": 1}),
        ("x" * (MAX_TOOL_OUTPUT_CHARS - 2), "x" * (MAX_TOOL_OUTPUT_CHARS - 2)),
    ],
)
def test_a_small_tool_output_is_kept_as_it_is(output: Any, kept: Any) -> None:
    assert capped_output(output) == kept


def test_a_large_tool_output_is_kept_as_the_start_of_its_json_and_its_size() -> None:
    kept = capped_output({"rows": ["y" * 100] * 400})
    assert isinstance(kept, str) and kept.startswith('{"rows": ["yyy')
    assert kept.endswith(
        f"[truncated: the output has {len(json.dumps({'rows': ['y' * 100] * 400}))} characters]"
    )


APPROVE = {
    "name": "send_mail",
    "description": "sends a mail, once a person approves",
    "parameters": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]},
    "node": {
        "type": "approval",
        "config": {"message": "send the mail to {{args.to}}?", "approvers": ["bob"]},
    },
}


def _agent(**config: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "p", "tools": [ADD, SHOUT], **config}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"tools": [ADD, {**SHOUT, "node": {"type": "nope"}}]},
            "config.tools[1].node.type",
            "unknown node type",
        ),
        (
            {"tools": [{**ADD, "node": {"type": "map", "config": {}}}]},
            "config.tools[0].node.type",
            "cannot be a map",
        ),
        ({"tools": [{**ADD, "node": {"type": "agent"}}]}, "config.tools[0].node.type", "cannot be a agent"),
        (
            {
                "tools": [
                    {**ADD, "node": {"type": "approval", "config": {"message": "ok?", "approve_edge": "x"}}}
                ]
            },
            "config.tools[0].node.type",
            "routes to successors",
        ),
        (
            {"tools": [{**ADD, "node": {"type": "workflow", "config": {}}}]},
            "config.tools[0].node.config.workflow_id",
            "required",
        ),
        (
            {
                "tools": [
                    {
                        **ADD,
                        "node": {
                            "type": "conditional",
                            "config": {"condition": "true", "true_edge": "a", "false_edge": "b"},
                        },
                    }
                ]
            },
            "config.tools[0].node.type",
            "routes",
        ),
        (
            {"tools": [{**ADD, "node": {"type": "http", "config": {"method": "FETCH", "url": "https://x"}}}]},
            "config.tools[0].node.config.method",
            "",
        ),
        ({"tools": [ADD, ADD]}, "config", "tool names must be unique: add"),
        ({"tools": [{**ADD, "name": "has space"}]}, "config.tools[0]", "1-64 letters"),
        ({"tools": [{**ADD, "parameters": {"type": "array"}}]}, "config.tools[0]", '"type" must be "object"'),
        ({"max_steps": 101}, "config.max_steps", "less than or equal to 100"),
        ({"on_max_steps": "loop"}, "config.on_max_steps", "'fail' or 'return_last'"),
        ({"tools": []}, "config.tools", "at least 1 item"),
    ],
)
def test_validation_names_the_field(change: dict[str, Any], field: str, words: str) -> None:
    problems = AgentNode().validate_config(_agent(**change))
    assert any(p.field == field and words in p.message for p in problems), problems


def test_a_valid_agent_has_no_problems_and_its_tool_templates_read_args() -> None:
    assert AgentNode().validate_config(_agent()) == []
    tool = {**SHOUT, "node": {"type": "transform", "config": {"template": "{{args.text}} {{fetch.output}}"}}}
    view = AgentNode().templated_config(_agent(tools=[tool]), default_registry())
    assert view["tools"] == ["{{fetch.output}}"], "validation checks what the tools read besides args"


# ---------------------------------------------------------------- runs through the job loop


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as running:
        yield running


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_shared_clients()


@pytest.fixture
def agent_services(services: RunnerServices, server: OpenAITestServer) -> RunnerServices:
    server.requests.clear()
    return replace(services, node_settings=NodeSettings.model_validate({"MODEL_SERVICE_URL": server.url}))


def call(name: str, args: Any) -> tuple[str, Any]:
    return (name, args)


async def run_agent(services: RunnerServices, **config: Any) -> Any:
    wf = definition([{"id": "agent", "type": "agent", "config": _agent(**config)}], [])
    runner = await start_job(services, wf, {})
    status = await runner.run()
    return status, await services.store.get_job(runner.job.id)


async def test_an_invalid_call_goes_back_to_the_model_which_corrects_it(agent_services, server):
    server.script(
        ScriptedReply(tool_calls=(call("add", {"a": 1}), call("shout", {"text": "hi"}), call("nope", {}))),
        ScriptedReply(tool_calls=(call("add", {"a": 1, "b": 2}),)),
        ScriptedReply(text="the sum is 3"),
    )
    status, job = await run_agent(agent_services)
    assert status is JobStatus.COMPLETED
    output = job.nodes["agent"].output
    assert output["text"] == "the sum is 3"
    first, second, last = output["steps"]
    assert [c.get("output", c.get("error")) for c in first["tool_calls"]] == [
        "the arguments do not match the tool's parameters: arguments: 'b' is a required property",
        "HI!",
        "there is no tool named 'nope'; the tools are add, shout",
    ]
    assert second["tool_calls"][0]["output"] == {"sum": 3} and second["tool_calls"][0]["arguments"] == {
        "a": 1,
        "b": 2,
    }
    assert last["tool_calls"] == []
    assert output["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in output["steps"])
    assert len(server.requests) == 3
    sent = server.requests[1].body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool", "tool"]
    assert sent["tools"][0] == {
        "type": "function",
        "function": {k: ADD[k] for k in ("name", "description", "parameters")},
    }
    keys = [r.headers["Idempotency-Key"] for r in server.requests]
    assert keys == [f"{job.id}:agent:1:{turn}" for turn in range(3)], "each model turn has its own key"
    events = [(e.type, e.data) for e in await events_of(agent_services, job.id)]
    assert [d["step"] for t, d in events if t == EventType.AGENT_STEP] == [0, 1, 2]
    started = [d["name"] for t, d in events if t == EventType.TOOL_CALL_STARTED]
    finished = [d["name"] for t, d in events if t == EventType.TOOL_CALL_FINISHED]
    assert sorted(started) == ["add", "shout"], "a call that was never valid never starts"
    assert sorted(finished) == ["add", "add", "nope", "shout"]


@pytest.mark.parametrize(
    ("on_max_steps", "status"), [("fail", JobStatus.FAILED), ("return_last", JobStatus.COMPLETED)]
)
async def test_max_steps_ends_the_agent_without_running_the_last_turns_calls(
    agent_services, server, on_max_steps, status
):
    server.script(
        *[ScriptedReply(text=f"turn {n}", tool_calls=(call("shout", {"text": str(n)}),)) for n in range(2)]
    )
    result, job = await run_agent(agent_services, max_steps=2, on_max_steps=on_max_steps)
    assert result is status and len(server.requests) == 2
    node = job.nodes["agent"]
    if on_max_steps == "fail":
        assert node.error is not None and node.error.type == "node_error"
        assert "reached max_steps (2) with the model still calling tools" in node.error.message
        return
    assert node.output["text"] == "turn 1"
    assert [
        s["tool_calls"][0].get("output", s["tool_calls"][0].get("error")) for s in node.output["steps"]
    ] == [
        "0!",
        "not run: the agent reached max_steps (2)",
    ]


async def test_a_json_answer_is_parsed_and_sequential_calls_run_in_order(agent_services, server):
    server.script(
        ScriptedReply(tool_calls=(call("shout", {"text": "a"}), call("shout", {"text": "b"}))),
        ScriptedReply(text='{"answer": 42}'),
    )
    status, job = await run_agent(agent_services, response_format="json_object", parallel_tool_calls=False)
    assert status is JobStatus.COMPLETED
    assert job.nodes["agent"].output["json"] == {"answer": 42}
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


async def test_streamed_tool_calls_are_put_together(server):
    server.script(
        ScriptedReply(
            text="let me see", tool_calls=(call("add", {"a": 1, "b": 2}), call("shout", '{"text": "x"}'))
        )
    )
    tokens: list[str] = []

    async def collect(text: str) -> None:
        tokens.append(text)

    settings = NodeSettings.model_validate({"MODEL_SERVICE_URL": server.url})
    ctx = standalone_context(TemplateContext(), services=standalone_services(settings, emit_token=collect))
    config = LlmConfig(
        model="m", prompt="p", stream=True, tools=[{"type": "function", "function": {"name": "add"}}]
    )
    result = await default_registry().get("llm").execute(config, ctx)
    assert "".join(tokens) == "let me see"
    assert [(c["name"], json.loads(c["arguments"])) for c in result.output["tool_calls"]] == [
        ("add", {"a": 1, "b": 2}),
        ("shout", {"text": "x"}),
    ]
    assert all(c["id"].startswith("call_") for c in result.output["tool_calls"])


# ---------------------------------------------------------------- tools that wait


async def decide(services: RunnerServices, job_id: str, name: str, approved: bool, comment: str = "") -> None:
    payload = {"approved": approved, "comment": comment or None, "data": None}
    record = SignalRecord(id=f"{name}-{approved}", job_id=job_id, name=name, payload=payload, sender="bob")
    await services.store.put_signal(record)


async def resumed(services: RunnerServices, job_id: str) -> JobStatus:
    """Run the suspended job on, as the job manager does when a signal for it arrives: a new runner."""
    job = await services.store.get_job(job_id)
    workflow = await services.store.get_workflow(job.workflow_id, job.workflow_version)
    return await JobRunner(services, job, Dag.from_definition(workflow.definition)).run()


async def test_an_approval_tool_pauses_the_agent_until_a_person_decides(agent_services, server):
    server.script(
        ScriptedReply(text="asking", tool_calls=(call("send_mail", {"to": "ann"}),)),
        ScriptedReply(text="sent it"),
    )
    wf = definition([{"id": "agent", "type": "agent", "config": _agent(tools=[APPROVE, SHOUT])}], [])
    runner = await start_job(agent_services, wf, {})
    assert await runner.run() is JobStatus.RUNNING, "the job is suspended: no actor holds it while it waits"
    job = await agent_services.store.get_job(runner.job.id)
    node = job.nodes["agent"]
    assert node.status is NodeStatus.WAITING and node.wait is not None and list(node.steps) == ["turn-0"]
    assert (node.wait.kind, node.wait.signal) == ("approval", "agent.0.0")
    assert node.wait.message == "send the mail to ann?" and node.wait.approvers == ["bob"]

    await decide(agent_services, job.id, "agent.0.0", True, "fine")
    assert await resumed(agent_services, job.id) is JobStatus.COMPLETED
    job = await agent_services.store.get_job(job.id)
    output = job.nodes["agent"].output
    assert output["text"] == "sent it" and job.nodes["agent"].attempts == 1
    decision = output["steps"][0]["tool_calls"][0]["output"]
    assert {k: decision[k] for k in ("approved", "by", "comment")} == {
        "approved": True,
        "by": "bob",
        "comment": "fine",
    }
    assert len(server.requests) == 2, "the model's first turn was not made again after the pause"
    sent = server.requests[1].body["messages"][-1]
    assert sent["role"] == "tool" and json.loads(sent["content"])["approved"] is True
    types = [e.type for e in await events_of(agent_services, job.id)]
    order = [
        EventType.TOOL_CALL_STARTED,
        EventType.NODE_WAITING,
        EventType.SIGNAL_RECEIVED,
        EventType.NODE_STARTED,
        EventType.TOOL_CALL_FINISHED,
        EventType.AGENT_STEP,
    ]
    at = [types.index(t, types.index(EventType.TOOL_CALL_STARTED)) for t in order]
    assert at == sorted(at), types


async def test_a_rejected_call_goes_back_to_the_model_and_each_approval_takes_its_own_decision(
    agent_services, server
):
    server.script(
        ScriptedReply(
            tool_calls=(
                call("send_mail", {"to": "ann"}),
                call("shout", {"text": "meanwhile"}),
                call("send_mail", {"to": "bo"}),
            )
        ),
        ScriptedReply(text="one sent, one refused"),
    )
    wf = definition([{"id": "agent", "type": "agent", "config": _agent(tools=[APPROVE, SHOUT])}], [])
    runner = await start_job(agent_services, wf, {})
    assert await runner.run() is JobStatus.RUNNING
    job_id = runner.job.id
    node = (await agent_services.store.get_job(job_id)).nodes["agent"]
    assert "turn-0.call-1" in node.steps, "the call that does not wait ran before the first approval"
    assert node.wait is not None and node.wait.signal == "agent.0.0"

    await decide(agent_services, job_id, "agent.0.0", False, "not ann")
    assert await resumed(agent_services, job_id) is JobStatus.RUNNING, "the second approval waits next"
    node = (await agent_services.store.get_job(job_id)).nodes["agent"]
    assert node.wait is not None and node.wait.signal == "agent.0.2" and node.status is NodeStatus.WAITING

    await decide(agent_services, job_id, "agent.0.2", True)
    assert await resumed(agent_services, job_id) is JobStatus.COMPLETED
    calls = (await agent_services.store.get_job(job_id)).nodes["agent"].output["steps"][0]["tool_calls"]
    assert calls[0]["error"] == "node_error: rejected by bob: not ann"
    assert calls[1]["output"] == "MEANWHILE!"
    assert calls[2]["output"]["approved"] is True
    assert len(server.requests) == 2


async def test_an_agent_in_a_maps_graph_cannot_wait_and_says_so(agent_services, server):
    server.script(ScriptedReply(tool_calls=(call("send_mail", {"to": "ann"}),)), ScriptedReply(text="ok"))
    agent = {"id": "a", "type": "agent", "config": _agent(tools=[APPROVE])}
    wf = definition(
        [{"id": "each", "type": "map", "config": {"items": [1], "graph": {"nodes": [agent], "edges": []}}}],
        [],
    )
    runner = await start_job(agent_services, wf, {})
    assert await runner.run() is JobStatus.COMPLETED
    item = (await agent_services.store.get_job(runner.job.id)).nodes["each"].output["results"][0]
    error = item["steps"][0]["tool_calls"][0]["error"]
    assert "waits, which only an agent that is a job's own node can do" in error
