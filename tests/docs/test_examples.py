"""Every workflow and every curl or client example of the guides runs against the real service and
produces what the guide shows; no such example is left unmarked (and so unrun)."""

from __future__ import annotations

import json

import httpx
import pytest

from docs.generate import GUIDES
from tests.docs.blocks import RUNNABLE_ROLES, Block, examples, parse_blocks
from tests.docs.conftest import DOCS
from tests.docs.runner import DocService, ExampleRunner

SHELLS = frozenset({"bash", "sh", "shell", "console"})


def _unmarked_problem(block: Block) -> str | None:
    if block.role is not None:
        return None
    if block.language in SHELLS and "curl " in block.text:
        return "a shell block with curl: mark it ```bash curl``` so it runs"
    if block.language == "json":
        try:
            value = json.loads(block.text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, dict) and "nodes" in value:
            return "a workflow definition: mark it ```json workflow``` so it runs"
    return None


def _role_problem(block: Block) -> str | None:
    if block.role in ("workflow", "input") and block.language != "json":
        return f"a {block.role} block must be json"
    if block.role == "curl" and block.language not in SHELLS:
        return "a curl block must be a shell block (bash)"
    if block.role == "client" and block.language != "python":
        return "a client block must be python"
    if block.role == "expected" and block.language not in ("json", "text"):
        return "an expected block is json or text"
    return None


@pytest.mark.parametrize("guide", GUIDES)
def test_every_example_of_the_guide_is_marked_to_run_and_well_formed(guide):
    blocks = parse_blocks(DOCS / guide)
    problems = [
        f"{block.where}: {problem}"
        for block in blocks
        for problem in (_unmarked_problem(block), _role_problem(block))
        if problem
    ]
    for example in examples(blocks):
        for expected in example.expected:
            if example.role == "workflow" and expected.language != "json":
                problems.append(f"{expected.where}: a workflow's expected block is json (the job)")
            if expected.language == "json":
                try:
                    json.loads(expected.text)
                except json.JSONDecodeError as exc:
                    problems.append(f"{expected.where}: not valid JSON: {exc}")
    assert not problems, "\n".join(problems)
    assert any(block.role in RUNNABLE_ROLES for block in blocks), f"{guide} has no runnable example"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("guide", GUIDES)
async def test_every_example_of_the_guide_runs_and_shows_what_the_service_answers(
    guide, docs_service: DocService, docs_http: httpx.AsyncClient
):
    runner = ExampleRunner(docs_service, docs_http)
    for example in examples(parse_blocks(DOCS / guide)):
        await runner.run(example)
