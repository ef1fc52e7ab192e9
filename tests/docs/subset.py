"""Compare what a guide shows with what the service produced, and pick JSON out of a script's output."""

from __future__ import annotations

import json
from typing import Any


def mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where `actual` differs from `expected`: objects need the expected keys (others may be there),
    lists need the same length with each item matching, other values must be equal (1 == 1.0, not True)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {json.dumps(actual)[:200]}"]
        found: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{where}.{key}: missing (keys: {', '.join(sorted(actual))})")
            else:
                found.extend(mismatches(value, actual[key], f"{where}.{key}"))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected a list of {len(expected)}, got {json.dumps(actual)[:200]}"]
        return [
            problem
            for i, item in enumerate(expected)
            for problem in mismatches(item, actual[i], f"{where}[{i}]")
        ]
    if type(expected) is bool or type(actual) is bool:
        same = type(expected) is type(actual) and expected == actual
    else:
        same = expected == actual
    return [] if same else [f"{where}: expected {json.dumps(expected)}, got {json.dumps(actual)[:200]}"]


def json_documents(text: str) -> list[Any]:
    """The JSON objects and arrays in a script's output, in order, also when printed back to back."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    index = 0
    while index < len(text):
        if text[index] not in "{[":
            index += 1
            continue
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index += 1
            continue
        found.append(value)
        index = end
    return found


def missing_lines(expected: str, output: str) -> list[str]:
    """Expected lines not found, in order, each within a line of the output."""
    lines = output.splitlines()
    position = 0
    missing = []
    for wanted in (line.strip() for line in expected.splitlines()):
        if not wanted:
            continue
        match = next((i for i in range(position, len(lines)) if wanted in lines[i]), None)
        if match is None:
            missing.append(wanted)
        else:
            position = match + 1
    return missing


def at_path(value: Any, path: str) -> Any:
    """`a.b.0.c` inside a JSON value."""
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value
