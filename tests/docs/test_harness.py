"""The example runner's own checks: a guide that shows something else than the service answers must fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import DocFormatError, examples, parse_blocks
from tests.docs.subset import json_documents, mismatches, missing_lines


def test_a_subset_matches_and_every_difference_is_named():
    actual = {"status": "completed", "result": {"n": 1, "extra": True}, "nodes": [{"id": "a", "x": 1}]}
    assert mismatches({"status": "completed", "nodes": [{"id": "a"}]}, actual) == []
    assert mismatches({"status": "failed", "result": {"m": 1}, "nodes": []}, actual) == [
        '$.status: expected "failed", got "completed"',
        "$.result.m: missing (keys: extra, n)",
        '$.nodes: expected a list of 0, got [{"id": "a", "x": 1}]',
    ]


def test_numbers_match_across_int_and_float_but_not_booleans():
    assert mismatches({"n": 1.0}, {"n": 1}) == []
    assert mismatches({"n": 1}, {"n": True}) == ["$.n: expected 1, got true"]
    assert mismatches({"b": False}, {"b": 0}) == ["$.b: expected false, got 0"]


def test_json_documents_are_found_back_to_back_and_among_other_output():
    output = 'HTTP/1.1 200 OK\n\n{"a": 1}{"b": [1, 2]}\n204\n[3]'
    assert json_documents(output) == [{"a": 1}, {"b": [1, 2]}, [3]]


def test_expected_lines_must_appear_in_order():
    output = "event: job_started\ndata: {}\nevent: job_completed\n"
    assert missing_lines("event: job_started\nevent: job_completed", output) == []
    assert missing_lines("event: job_completed\nevent: job_started", output) == ["event: job_started"]


def _guide(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_blocks_are_grouped_into_examples_with_their_input_and_expected_results(tmp_path):
    path = _guide(
        tmp_path,
        "text\n\n```json workflow nowait\n{}\n```\n\n```json input\n{}\n```\n\n```json expected\n{}\n```\n\n"
        "````bash curl save=JOB_ID:id\necho '```'\n````\n\n```text expected\nx\n```\n\n```json\n{}\n```\n",
    )
    found = examples(parse_blocks(path))
    assert [(e.role, e.block.options, e.input is not None, len(e.expected)) for e in found] == [
        ("workflow", {"nowait": ""}, True, 1),
        ("curl", {"save": "JOB_ID:id"}, False, 1),
    ]
    assert found[1].block.text == "echo '```'\n"


def test_an_expected_block_without_a_runnable_block_before_it_is_refused(tmp_path):
    path = _guide(tmp_path, "```json\n{}\n```\n\n```json expected\n{}\n```\n")
    with pytest.raises(DocFormatError, match="must follow a runnable block"):
        examples(parse_blocks(path))
