"""The agent node without Ray: its pure parts as tables, its validation, and whole runs through the job
loop (real SQLite, real Redis) against the real test LLM server with inline tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from actors.job_loop.job_runner import RunnerServices
from engine.records import EventType, JobStatus
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
        ({"tools": [{**ADD, "node": {"type": "approval"}}]}, "config.tools[0].node.type", "pauses its job"),
        (
            {"tools": [{**ADD, "node": {"type": "workflow", "config": {}}}]},
            "config.tools[0].node.type",
            "pauses",
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
