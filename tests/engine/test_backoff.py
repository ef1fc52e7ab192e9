"""Tables of the one back-off every retry layer uses: the exponential delay, its equal jitter, and the
Retry-After a response asks for."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict

from engine.backoff import Uniform, equal_jitter, exponential_delay, retry_after_s
from engine.models import RetryPolicy

NOW = 1_700_000_000.0
"""Tue, 14 Nov 2023 22:13:20 GMT."""


@pytest.mark.parametrize(
    ("retry", "first_s", "ceiling_s", "expected"),
    [
        pytest.param(1, 0.5, 30.0, 0.5, id="the-first-retry-waits-the-first-delay"),
        pytest.param(2, 0.5, 30.0, 1.0, id="the-second-doubles-it"),
        pytest.param(4, 0.5, 30.0, 4.0, id="the-fourth-is-eight-times-the-first"),
        pytest.param(7, 0.5, 30.0, 30.0, id="capped-at-the-ceiling"),
        pytest.param(60, 1.0, 60.0, 60.0, id="a-long-run-stays-at-the-ceiling"),
        pytest.param(5000, 3600.0, 86400.0, 86400.0, id="thousands-of-retries-do-not-overflow"),
        pytest.param(0, 0.5, 30.0, 0.5, id="retry-0-counts-as-the-first"),
        pytest.param(3, 0.0, 30.0, 0.0, id="no-first-delay-no-wait"),
        pytest.param(3, 2.0, 0.0, 0.0, id="a-ceiling-of-0-no-wait"),
    ],
)
def test_exponential_delay(retry: int, first_s: float, ceiling_s: float, expected: float) -> None:
    assert exponential_delay(retry, first_s, ceiling_s) == expected


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (30, 10.0)],
)
def test_a_retry_policy_waits_its_backoff_before_the_second_attempt_then_doubles(
    attempt: int, expected: float
) -> None:
    assert RetryPolicy(max_attempts=50, backoff=1.0, max_delay=10.0).delay_before(attempt) == expected


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        pytest.param(lambda low, high: low, 5.0, id="at-least-half"),
        pytest.param(lambda low, high: high, 10.0, id="at-most-all"),
        pytest.param(lambda low, high: (low + high) / 2, 7.5, id="in-between"),
    ],
)
def test_equal_jitter_keeps_half_the_delay_and_draws_the_other_half(draw: Uniform, expected: float) -> None:
    assert equal_jitter(10.0, draw) == expected


def test_equal_jitter_draws_from_the_random_source_by_default() -> None:
    draws = {equal_jitter(2.0) for _ in range(200)}
    assert all(1.0 <= draw <= 2.0 for draw in draws)
    assert len(draws) > 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"Retry-After": ""}, None, id="empty"),
        pytest.param({"Retry-After": "  "}, None, id="blank"),
        pytest.param({"Retry-After": "120"}, 120.0, id="delta-seconds"),
        pytest.param({"Retry-After": " 7 "}, 7.0, id="delta-seconds-with-spaces"),
        pytest.param({"Retry-After": "0.05"}, 0.05, id="fractional-seconds"),
        pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
        pytest.param({"Retry-After": "-5"}, 0.0, id="negative-is-0"),
        pytest.param({"Retry-After": "soon"}, None, id="unreadable"),
        pytest.param({"Retry-After": "inf"}, None, id="infinite-is-unreadable"),
        pytest.param({"Retry-After": "nan"}, None, id="nan-is-unreadable"),
        pytest.param({"Retry-After": "Tue, 14 Nov 2023 22:14:50 GMT"}, 90.0, id="http-date"),
        pytest.param({"Retry-After": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0, id="http-date-in-the-past-is-0"),
        pytest.param({"Retry-After": "Tue, 99 Nov 2023 25:00:00 GMT"}, None, id="http-date-unreadable"),
        pytest.param({"retry-after-ms": "250"}, 0.25, id="openai-milliseconds"),
        pytest.param({"retry-after-ms": "-1"}, 0.0, id="negative-milliseconds-is-0"),
        pytest.param({"retry-after-ms": "250", "Retry-After": "1"}, 0.25, id="milliseconds-win"),
        pytest.param({"retry-after-ms": "x", "Retry-After": "3"}, 3.0, id="unreadable-ms-fall-back"),
        pytest.param({"retry-after-ms": "", "Retry-After": "3"}, 3.0, id="empty-ms-fall-back"),
        pytest.param(CIMultiDict({"retry-after": "4"}), 4.0, id="names-as-the-headers-compare-them"),
        pytest.param(CIMultiDict({"RETRY-AFTER-MS": "1500"}), 1.5, id="milliseconds-in-any-case"),
    ],
)
def test_retry_after(headers: Mapping[str, str], expected: float | None) -> None:
    assert retry_after_s(headers, now=lambda: NOW) == expected
