"""`validate` lists every problem; `run` refuses bad files and input with exit code 2 before starting
anything (these tests start no Ray)."""

from __future__ import annotations

import json

import pytest

from cli import main
from tests.cli.support import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def test_there_are_the_four_documented_examples():
    assert {path.name for path in EXAMPLE_FILES} == {
        "customer-support.json",
        "code-node.json",
        "http-node.json",
        "fan-out.json",
    }


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.stem)
def test_every_example_is_valid(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "valid workflow" in capsys.readouterr().out


def test_validate_lists_every_problem_and_exits_2(tmp_path, capsys):
    broken = {
        "name": "broken",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "ask", "type": "llm", "config": {"prompt": "{{nowhere.output}}"}},
            {"id": "route", "type": "conditional", "config": {"condition": "1 >", "true_edge": "x"}},
            {"id": "mystery", "type": "teleport"},
        ],
        "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "ghost"}],
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) >= 6, out
    for expected in ("ask.config.model", "nowhere", "false_edge", "teleport", "ghost", "config.condition"):
        assert expected in out, f"{expected!r} missing from:\n{out}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON: line 1, column 2"),
        ("[1, 2]", "must hold a JSON object, not a list"),
    ],
)
def test_a_file_that_is_no_workflow_object_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.json")]) == 2
    assert "cannot read workflow file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("{'single': 'quotes'}", "--input is not valid JSON"),
        ("[1, 2]", "--input must be a JSON object"),
        ("@/nonexistent/input.json", "cannot read input file"),
    ],
)
def test_bad_input_exits_2_before_anything_starts(capsys, given, message):
    assert main(["run", str(EXAMPLES / "code-node.json"), "--input", given]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == "", "nothing ran, so no result is printed"


def test_an_invalid_workflow_exits_2_with_its_problems_before_anything_starts(tmp_path, capsys):
    path = tmp_path / "cycle.json"
    path.write_text(
        json.dumps(
            {
                "name": "cycle",
                "nodes": [{"id": "a", "type": "start"}, {"id": "b", "type": "end"}],
                "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            }
        )
    )
    assert main(["run", str(path)]) == 2
    assert "cycle" in capsys.readouterr().err
