"""The agent node's pure parts: its durable steps' keys, the conversation rebuilt from them, a tool call's
arguments checked against the tool's JSON Schema, and a tool's output as the model gets it back.

Steps (engine/steps.py) of one attempt: `turn-<n>` is the model's answer of turn n (`text`, `model`,
`tool_calls` as [{"id", "name", "arguments"}] with the arguments as the model's JSON text, `usage`), and
`turn-<n>.call-<i>` the result of its i-th tool call, `{"output": ...}` or `{"error": "..."}` (plus the
tool's `usage` when it made LLM calls); `turn-<n>.call-<i>.arrival` is what ended the wait of a call
whose tool waits (see `arrival_key`). The conversation sent with turn n is the prompt followed, for each
earlier turn, by the assistant's message and one `tool` message per call, in call order.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_TOOL_OUTPUT_CHARS = 16 * 2**10
"""A tool's output above this many characters of JSON is kept (and sent to the model) as the first
MAX_TOOL_OUTPUT_CHARS characters of its JSON text followed by a note of its size."""
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""OpenAI's rule for a function's name."""


def turn_key(turn: int) -> str:
    return f"turn-{turn}"


def call_key(turn: int, index: int) -> str:
    return f"turn-{turn}.call-{index}"


def arrival_key(turn: int, index: int) -> str:
    """The step of what ended the wait of a tool call that waited (an approval's decision, a child job's
    end): {"wait", "time", "signal"}, from which the tool's node type decides the call's result."""
    return f"turn-{turn}.call-{index}.arrival"


def assistant_message(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The model's answer as the assistant message the next turn sends back."""
    message: dict[str, Any] = {"role": "assistant", "content": answer["text"] or None}
    if answer["tool_calls"]:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in answer["tool_calls"]
        ]
    return message


def tool_message(call: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call's result as the model reads it: the output as JSON text, or `error: <why>`."""
    if "error" in result:
        content = f"error: {result['error']}"
    else:
        output = result["output"]
        content = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return {"role": "tool", "tool_call_id": call["id"], "content": content}


def conversation(
    answers: Sequence[Mapping[str, Any]], results: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """The messages after the prompt: each earlier answer, then its calls' results."""
    messages: list[dict[str, Any]] = []
    for answer, turn_results in zip(answers, results, strict=True):
        messages.append(assistant_message(answer))
        messages.extend(
            tool_message(call, result)
            for call, result in zip(answer["tool_calls"], turn_results, strict=True)
        )
    return messages


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a JSON Schema (draft 2020-12) of an arguments object, or None. Checked once per
    distinct schema in a process (a check costs a third of a millisecond, and each run of an agent parses
    its tools again)."""
    return _schema_problem(json.dumps(schema, sort_keys=True, default=str))


@functools.lru_cache(maxsize=1024)
def _schema_problem(schema_json: str) -> str | None:
    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    if schema.get("type", "object") != "object":
        return 'a tool\'s arguments are an object: "type" must be "object"'
    return None


def arguments_validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    """What checks a tool's arguments against its `schema`: made once per tool and run (made, it costs half
    a millisecond; run, microseconds)."""
    return Draft202012Validator(schema)


def parsed_arguments(
    arguments: str, validator: Draft202012Validator
) -> tuple[dict[str, Any] | None, str | None]:
    """The call's arguments as an object the tool's schema accepts, or None and why not (for the model)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return None, f"the arguments are not JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return None, f"the arguments must be a JSON object, not {type(value).__name__}"
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.path))
    if errors:
        shown = "; ".join(f"{_where(error.absolute_path)}: {error.message}" for error in errors[:5])
        return None, f"the arguments do not match the tool's parameters: {shown}"
    return value, None


def shown_arguments(arguments: str) -> Any:
    """A call's arguments as the node's output shows them: the JSON value, or the text when it is not JSON."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def capped_output(output: Any) -> Any:
    """A tool's output as it is kept and sent to the model (see MAX_TOOL_OUTPUT_CHARS)."""
    text = json.dumps(output, ensure_ascii=False, default=str)
    if len(text) <= MAX_TOOL_OUTPUT_CHARS:
        return output
    return f"{text[:MAX_TOOL_OUTPUT_CHARS]} [truncated: the output has {len(text)} characters]"


def _where(path: Sequence[Any]) -> str:
    return "arguments" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
