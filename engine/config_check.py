"""Check a node's config against its pydantic model, letting template strings stand for any type.

At definition time `"temperature": "{{input.t}}"` cannot be checked as a float yet: such a field is
checked again, rendered, when the node runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _holds_template(config: Any, loc: tuple[int | str, ...]) -> bool:
    """Whether the value at `loc`, or a value on the way to it, is a template string.

    Pydantic adds union member names to a loc, so the walk stops quietly where the data ends."""
    value = config
    for part in loc:
        if _is_template(value):
            return True
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return _is_template(value)


def model_problems(model: type[BaseModel], config: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(field, message) for every way `config` fails `model`, skipping fields that hold a template."""
    try:
        model.model_validate(config)
    except ValidationError as exc:
        problems: list[tuple[str | None, str]] = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if _holds_template(config, loc):
                continue
            field = ".".join(str(part) for part in loc) or None
            problems.append((f"config.{field}" if field else "config", error["msg"]))
        return problems
    return []
