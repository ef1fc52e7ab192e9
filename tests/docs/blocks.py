"""Fenced code blocks of a Markdown guide, and the runnable examples they make.

The info string after the opening fence says what a block is: its language, then an optional role and
`key=value` options, e.g. ```` ```json workflow ````, ```` ```bash curl save=JOB_ID ````.

- ```` ```json workflow ```` a workflow definition: the suite creates it and runs a job of it. Options:
  `invalid` (creating it must fail; `expected` then matches the error body), `nowait` (start the job and
  go on without waiting for its end).
- ```` ```json input ```` (right after a workflow) the job's input; `{}` when there is none.
- ```` ```bash curl ```` a shell script (curl commands, mostly), run with bash. Option `save=NAME` keeps
  the `id` of the last JSON object it printed in $NAME for later blocks; `save=NAME:a.b` keeps that path.
- ```` ```python client ```` a Python script, run with python3.
- ```` ```json expected ```` / ```` ```text expected ```` (right after a runnable block, or after its input):
  what it must produce. JSON is a subset match: against the finished job for a workflow, against the last
  JSON object or array printed by a script. Text: each line must appear, in order, within the output's
  lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`]*)$")
RUNNABLE_ROLES = frozenset({"workflow", "curl", "client"})
ROLES = RUNNABLE_ROLES | {"input", "expected"}


class DocFormatError(ValueError):
    """A guide's blocks do not follow the conventions above."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    role: str | None
    options: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise DocFormatError(f"{self.where}: not valid JSON: {exc}") from None


@dataclass
class Example:
    """A runnable block with the input and expected results that follow it."""

    block: Block
    input: Block | None = None
    expected: list[Block] = field(default_factory=list)

    @property
    def role(self) -> str:
        assert self.block.role is not None
        return self.block.role


def _info(info: str) -> tuple[str, str | None, dict[str, str]]:
    words = info.split()
    if not words:
        return "", None, {}
    language, role, options = words[0], None, {}
    for word in words[1:]:
        if "=" in word:
            key, _, value = word.partition("=")
            options[key] = value
        elif role is None and word in ROLES:
            role = word
        else:
            options[word] = ""
    return language, role, options


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, start = opening["fence"], index
        body: list[str] = []
        index += 1
        while index < len(lines) and not (lines[index].startswith(fence) and not lines[index].strip("`")):
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise DocFormatError(f"{path.name}:{start + 1}: code block never closed")
        language, role, options = _info(opening["info"])
        blocks.append(Block(path, start + 1, language, role, options, "\n".join(body) + "\n"))
        index += 1
    return blocks


def examples(blocks: list[Block]) -> list[Example]:
    """Group the runnable blocks with the input and expected blocks that follow them."""
    found: list[Example] = []
    current: Example | None = None
    for block in blocks:
        if block.role in RUNNABLE_ROLES:
            current = Example(block)
            found.append(current)
        elif block.role == "input":
            if current is None or current.role != "workflow" or current.input or current.expected:
                raise DocFormatError(f"{block.where}: an input block must follow a workflow block")
            current.input = block
        elif block.role == "expected":
            if current is None:
                raise DocFormatError(f"{block.where}: an expected block must follow a runnable block")
            current.expected.append(block)
        else:
            current = None
    return found
