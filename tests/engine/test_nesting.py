"""The nesting checks agree with a plain recursive count on every shape, strings full of brackets,
quotes and escapes included, and stay linear on text built to make a regex backtrack."""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

import pytest

from engine.errors import NestingTooDeepError
from engine.nesting import (
    MAX_JSON_DEPTH,
    check_value_depth,
    crossing,
    text_too_deep,
    value_too_deep,
)
from engine.records import ErrorInfo, NodeCheckpoint
from tests.support.nesting import depth

TRICKY_STRINGS = ["[", "]}", '"', '\\"', "\\", "\\\\", '{"a": [1]}', "\u2200", ""]


def shape(rng: random.Random, levels: int) -> Any:
    roll = rng.random()
    if levels == 0 or roll < 0.2:
        return rng.choice([1, None, True, 2.5, *TRICKY_STRINGS])
    if roll < 0.6:
        return [shape(rng, levels - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(TRICKY_STRINGS) + str(i): shape(rng, levels - 1) for i in range(rng.randint(0, 3))}


def test_every_check_agrees_with_a_recursive_count():
    rng = random.Random(13)
    for _ in range(2_000):
        value = shape(rng, rng.randint(0, 12))
        text = json.dumps(value).encode()
        for limit in (0, 1, 2, 4, 8):
            expected = depth(value) > limit
            assert value_too_deep(value, limit) is expected, (value, limit)
            assert text_too_deep(text, limit) is expected, (text, limit)
            assert (crossing(text, limit) is not None) is expected, (text, limit)


def test_the_limit_itself_is_allowed_and_one_more_is_not():
    at_limit: Any = "x"
    for _ in range(MAX_JSON_DEPTH):
        at_limit = [at_limit]
    assert not value_too_deep(at_limit) and not text_too_deep(json.dumps(at_limit).encode())
    assert value_too_deep([at_limit]) and text_too_deep(json.dumps([at_limit]).encode())


def test_models_count_as_objects_and_sets_as_arrays():
    node = NodeCheckpoint(
        node_id="n", node_type="t", error=ErrorInfo(type="x", message="m", details={"a": {}})
    )
    assert not value_too_deep(node, 4) and value_too_deep(node, 3), "node, error, details, {}"
    assert value_too_deep({frozenset({1})}, 2) is False and value_too_deep([{1}], 1) is True


def test_crossing_names_the_line_and_column_of_the_first_level_past_the_limit():
    text = '{"a":\n  [["\u00e9", [[1]]]]}'.encode()
    where = crossing(text, 3)
    assert where is not None and (where.line, where.column) == (2, 10), "é is one column"
    assert crossing(text, 5) is None


@pytest.mark.timeout(20)
def test_text_that_would_make_a_regex_backtrack_is_read_in_linear_time():
    for text in (b'"' + b'\\"' * 500_000, b'\\"' * 500_000, b'"[' * 500_000, b"[" * 1_000_000):
        assert text_too_deep(text) is (text[:2] == b'"[' or text[0] == ord("["))
        crossing(text)


def test_a_refusal_names_what_and_survives_the_trip_between_processes():
    with pytest.raises(NestingTooDeepError) as refused:
        check_value_depth([[[]]], "the output of node 'n'", limit=2)
    assert refused.value.message == "the output of node 'n' is nested deeper than the limit of 2 levels"
    shipped = pickle.loads(pickle.dumps(refused.value))
    assert (type(shipped), shipped.message, shipped.code) == (
        NestingTooDeepError,
        refused.value.message,
        "nesting_too_deep",
    )
