"""The llm node against a real OpenAI-compatible server on loopback (tests/support/openai_server.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from engine.conditions import evaluate_condition
from engine.errors import NodeExecutionError, NodeTimeoutError, RetryableNodeError
from engine.records import LogLevel
from engine.templating import TemplateContext, render
from nodes.base import NodeContext, NodeResult
from nodes.llm import LlmConfig, chat_completions_url, provider_of
from nodes.llm_client import close_shared_clients
from nodes.provider_limits import InProcessLimiter, LimitKey, ProviderLimits
from nodes.registry import default_registry
from nodes.settings import NodeSettings
from tests.support.node_services import standalone_services
from tests.support.openai_server import OpenAITestServer

LogRecord = tuple[LogLevel, str, dict[str, Any]]


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_shared_clients()


def settings_for(server: OpenAITestServer, **overrides: Any) -> NodeSettings:
    values = {
        "MODEL_SERVICE_URL": server.url,
        "LLM_BACKOFF_BASE_S": "0.01",
        "LLM_REQUEST_TIMEOUT_S": "5",
        "LLM_MAX_ATTEMPTS": "4",
    }
    values.update({key: str(value) for key, value in overrides.items()})
    return NodeSettings(**values)


async def run_llm(
    config: dict[str, Any],
    settings: NodeSettings,
    logs: list[LogRecord] | None = None,
    **services: Any,
) -> NodeResult:
    node = default_registry().get("llm")
    ctx = NodeContext(
        job_id="job1",
        workflow_id="wf1",
        node_id="classify",
        attempt=2,
        scope=TemplateContext(),
        log=lambda level, message, data: (logs if logs is not None else []).append((level, message, data)),
        services=standalone_services(settings, **services),
    )
    return await node.execute(node.parse_config(config, "classify"), ctx)


BASIC = {"model": "gpt-4", "prompt": "Hello there"}


async def test_text_reply_with_model_and_usage(server):
    config = {**BASIC, "system": "Be brief.", "temperature": 0.2, "max_tokens": 50}
    result = await run_llm(config, settings_for(server))

    assert result.output == {"text": "echo: Hello there", "model": "gpt-4"}
    assert result.usage == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "gpt-4",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }


async def test_json_reply_fields_are_output_fields_that_templates_and_conditions_read(server):
    server.json_reply = {"category": "technical", "confidence": 0.9}
    config = {**BASIC, "response_format": "json_object"}
    result = await run_llm(config, settings_for(server))

    assert result.output["category"] == "technical"
    assert result.output["confidence"] == 0.9
    assert result.output["text"] == '{"category": "technical", "confidence": 0.9}'
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    scope = TemplateContext(nodes={"classify": result.output})
    assert render("{{classify.output.category}}", scope) == "technical"
    assert evaluate_condition("{{classify.output.category}} == 'technical'", scope) is True


async def test_a_text_reply_that_is_a_json_object_is_parsed_even_in_a_fence(server):
    server.reply_text = '```json\n{"answer": 42, "text": "not the text"}\n```'
    result = await run_llm(BASIC, settings_for(server))
    assert result.output["answer"] == 42
    assert result.output["text"] == server.reply_text, "text keeps the whole reply"


async def test_json_requested_but_prose_returned_is_a_retryable_failure(server):
    server.reply_text = "Sure! The category is technical."
    with pytest.raises(RetryableNodeError, match="JSON object"):
        await run_llm({**BASIC, "response_format": {"type": "json_object"}}, settings_for(server))


@pytest.mark.timeout(20)
async def test_429_waits_as_long_as_retry_after_says(server):
    server.inject(429, retry_after=1.0, message="Rate limit reached for gpt-4")
    logs: list[LogRecord] = []
    result = await run_llm(BASIC, settings_for(server), logs)

    assert result.output["text"] == "echo: Hello there"
    first, second = server.requests
    waited = second.received_at - first.received_at
    assert 1.0 <= waited < 1.5, f"waited {waited:.3f} s for a Retry-After of 1 s"
    [(level, message, data)] = logs
    assert level is LogLevel.WARNING and "429" in message and "Rate limit reached" in message
    assert data["wait_s"] == 1.0


async def test_5xx_is_retried_with_backoff_until_it_succeeds(server):
    server.inject(503, count=2)
    logs: list[LogRecord] = []
    result = await run_llm(BASIC, settings_for(server), logs)
    assert result.output["text"] == "echo: Hello there"
    assert len(server.requests) == 3
    assert [message.split(";")[0] for _, message, _ in logs] == [
        f"LLM provider {provider_of(server.url)} answered 503: injected error 503"
    ] * 2


async def test_5xx_gives_up_after_the_last_attempt_as_a_retryable_error(server):
    server.inject(500, count=3, message="upstream overloaded")
    with pytest.raises(
        RetryableNodeError, match=r"answered 500: upstream overloaded \(3 attempts\)"
    ) as caught:
        await run_llm(BASIC, settings_for(server, LLM_MAX_ATTEMPTS=3))
    assert caught.value.retryable
    assert len(server.requests) == 3


async def test_a_retry_after_beyond_the_backoff_ceiling_ends_the_tries_at_once(server):
    server.inject(429, retry_after=120)
    started = time.monotonic()
    with pytest.raises(RetryableNodeError, match="retry after 120 s"):
        await run_llm(BASIC, settings_for(server, LLM_BACKOFF_MAX_S=10))
    assert time.monotonic() - started < 1.0
    assert len(server.requests) == 1


async def test_400_is_not_retried_and_carries_the_providers_message(server):
    server.inject(400, message="Invalid value for 'temperature': must be at most 2.")
    with pytest.raises(NodeExecutionError) as caught:
        await run_llm(BASIC, settings_for(server))
    assert type(caught.value) is NodeExecutionError and not caught.value.retryable
    assert "(400): Invalid value for 'temperature': must be at most 2." in caught.value.message
    assert len(server.requests) == 1


async def test_a_slow_provider_ends_in_a_timeout_error(server):
    server.latency_s = 3.0
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match=r"timed out after 0.3 s") as caught:
        await run_llm(BASIC, settings_for(server, LLM_REQUEST_TIMEOUT_S=0.3))
    assert caught.value.retryable
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_provider_is_retried_then_reported_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = NodeSettings(
        MODEL_SERVICE_URL=f"http://127.0.0.1:{closed_port}",
        LLM_BACKOFF_BASE_S="0.01",
        LLM_MAX_ATTEMPTS="2",
    )
    logs: list[LogRecord] = []
    with pytest.raises(RetryableNodeError, match=r"could not be reached.*\(2 attempts\)"):
        await run_llm(BASIC, settings, logs)
    assert len(logs) == 1


async def test_streaming_calls_emit_token_per_chunk_in_order_as_they_arrive(server):
    server.reply_text = "one two three four"
    server.chunk_delay_s = 0.05
    received: list[tuple[str, float]] = []

    async def emit_token(text: str) -> None:
        received.append((text, time.monotonic()))

    result = await run_llm({**BASIC, "stream": True}, settings_for(server), emit_token=emit_token)

    assert [text for text, _ in received] == ["one ", "two ", "three ", "four"]
    assert received[-1][1] - received[0][1] >= 0.12, "chunks arrived over time, not all at the end"
    assert result.output == {"text": "one two three four", "model": "gpt-4"}
    assert result.usage == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert server.requests[0].body["stream"] is True


async def test_stream_without_an_emit_token_service_makes_a_plain_request(server):
    result = await run_llm({**BASIC, "stream": True}, settings_for(server))
    assert result.output["text"] == "echo: Hello there"
    assert "stream" not in server.requests[0].body


async def test_a_streamed_429_is_retried_before_any_token(server):
    server.inject(429, retry_after=0.05)
    tokens: list[str] = []

    async def emit_token(text: str) -> None:
        tokens.append(text)

    result = await run_llm({**BASIC, "stream": True}, settings_for(server), emit_token=emit_token)
    assert "".join(tokens) == result.output["text"] == "echo: Hello there"
    assert len(server.requests) == 2


async def test_idempotency_key_and_the_settings_api_key_are_sent(server):
    await run_llm(BASIC, settings_for(server, LLM_API_KEY="sk-from-settings"))
    headers = server.requests[0].headers
    assert headers["Idempotency-Key"] == "job1:classify:2"
    assert headers["Authorization"] == "Bearer sk-from-settings"


async def test_the_configs_api_key_wins_and_never_reaches_logs_or_errors(server, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "sk-secret-5f2a9c"
    server.inject(503, message=f"upstream rejected key {secret}")
    server.inject(401, message=f"Incorrect API key provided: {secret}")
    config = {**BASIC, "api_key": secret}
    logs: list[LogRecord] = []
    with pytest.raises(NodeExecutionError) as caught:
        await run_llm(config, settings_for(server, LLM_API_KEY="sk-from-settings"), logs)

    assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"
    assert "Incorrect API key provided: ***" in caught.value.message
    assert logs, "the 503 was logged"
    everything = " ".join([caught.value.message, caplog.text, repr(logs)])
    assert secret not in everything
    parsed = LlmConfig.model_validate(config)
    assert secret not in repr(parsed) and secret not in str(parsed)
    assert parsed.model_dump(mode="json")["api_key"] == secret, "the rendered config ships the key whole"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://model-service:8003", "http://model-service:8003/v1/chat/completions"),
        ("http://model-service:8003/", "http://model-service:8003/v1/chat/completions"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("http://localhost:11434/v1/", "http://localhost:11434/v1/chat/completions"),
        ("https://gw.example/openai/v2", "https://gw.example/openai/v2/chat/completions"),
        ("https://gw.example/llm", "https://gw.example/llm/v1/chat/completions"),
        ("http://h/custom/chat/completions", "http://h/custom/chat/completions"),
    ],
)
def test_base_url_with_or_without_a_version_segment(base, expected):
    assert chat_completions_url(base) == expected


@pytest.mark.parametrize("base", ["ftp://models.example", "model-service:8003", "http://"])
def test_a_model_service_url_that_is_not_http_is_a_clear_error(base):
    with pytest.raises(NodeExecutionError, match="MODEL_SERVICE_URL must be an http"):
        chat_completions_url(base)


async def test_a_url_ending_in_chat_completions_is_used_as_given(server):
    await run_llm(BASIC, settings_for(server, MODEL_SERVICE_URL=f"{server.url}/chat/completions"))
    assert server.requests[0].path == "/chat/completions"


async def test_the_in_process_limiter_keeps_requests_in_flight_under_the_cap(server):
    server.latency_s = 0.1
    limiter = InProcessLimiter(ProviderLimits(max_concurrency=3))
    settings = settings_for(server)
    started = time.monotonic()
    results = await asyncio.gather(
        *(run_llm({**BASIC, "prompt": f"item {i}"}, settings, llm_limiter=limiter) for i in range(12))
    )
    elapsed = time.monotonic() - started
    assert [r.output["text"] for r in results] == [f"echo: item {i}" for i in range(12)]
    assert server.peak_open == 3
    assert elapsed >= 0.4
    assert limiter.core.in_flight(LimitKey(provider_of(server.url), "gpt-4")) == 0


async def test_the_test_server_serves_at_most_max_in_flight_and_queues_the_rest():
    with OpenAITestServer(latency_s=0.1, max_in_flight=2) as capped:
        settings = settings_for(capped)
        started = time.monotonic()
        await asyncio.gather(*(run_llm(BASIC, settings) for _ in range(6)))
        elapsed = time.monotonic() - started
    assert capped.peak_open == 6, "all six arrived at once"
    assert 0.3 <= elapsed < 0.6, "and were answered two at a time"


@pytest.mark.parametrize(
    ("config", "problem_fields"),
    [
        ({"model": "gpt-4", "prompt": "{{input.q}}", "temperature": "{{input.t}}"}, []),
        ({"model": "gpt-4", "prompt": "hi", "temperature": 3}, ["config.temperature"]),
        ({"model": "gpt-4"}, ["config.prompt"]),
        ({"model": "gpt-4", "prompt": "hi", "response_format": {"schema": {}}}, ["config.response_format"]),
        ({"model": "gpt-4", "prompt": "hi", "response_format": "yaml"}, ["config.response_format"]),
        ({"model": "gpt-4", "prompt": "hi", "base_url": "http://169.254.169.254"}, ["config.base_url"]),
    ],
)
def test_config_validation(config, problem_fields):
    problems = default_registry().get("llm").validate_config(config)
    assert [p.field for p in problems] == problem_fields
