"""What the command line reads from the user: a workflow file and the job's input, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class CliInputError(Exception):
    """Something the user gave cannot be used (exit code 2); the message says what and where."""


def load_json_file(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliInputError(
            f"{what} {path} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def load_workflow_file(path: Path) -> dict[str, Any]:
    """The raw definition; validation (every problem at once) is the engine's job, not this one's."""
    raw = load_json_file(path, "workflow file")
    if not isinstance(raw, dict):
        raise CliInputError(f"workflow file {path} must hold a JSON object, not a {type(raw).__name__}")
    return raw


def parse_json_option(text: str, option: str) -> Any:
    """An option's value as JSON text, or `@path` to a JSON file."""
    if text.startswith("@"):
        return load_json_file(Path(text[1:]), f"{option.removeprefix('--')} file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliInputError(f"{option} is not valid JSON: column {exc.colno}: {exc.msg}") from None


def parse_input(text: str | None, option: str = "--input") -> dict[str, Any]:
    """`--input` (or `option`) as JSON text, or `@path` to a JSON file; it must be an object (read by
    {{input.*}}, or a signal's payload)."""
    if text is None:
        return {}
    value = parse_json_option(text, option)
    if not isinstance(value, dict):
        raise CliInputError(
            f'{option} must be a JSON object such as \'{{"message": "hi"}}\', not a {type(value).__name__}'
        )
    return value
