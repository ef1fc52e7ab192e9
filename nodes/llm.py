"""The llm node: one chat completion from an OpenAI-compatible API (the platform's model service at
MODEL_SERVICE_URL; also OpenAI, vLLM, Ollama).

Where the request goes: MODEL_SERVICE_URL is the API root when its path ends in a version segment
(`https://api.openai.com/v1`, `http://localhost:11434/v1`), and `/v1` is appended otherwise
(`http://model-service:8003` -> `http://model-service:8003/v1`); `/chat/completions` follows. A URL that
already ends in `/chat/completions` is used as it is. There is deliberately no per-node base URL:
the model service is the one trusted destination, and a user-chosen URL would bypass the HTTP node's
address checks.

Services the node uses from its context: `settings`, `llm_limiter` (the executors hand out the
cluster-wide one; without one, calls are not limited) and `emit_token` (called for each streamed piece
of text when `stream` is on; without it, a streaming config makes a plain request).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator

from engine.backoff import equal_jitter, exponential_delay
from engine.errors import NodeExecutionError, NodeTimeoutError, RetryableNodeError
from engine.records import LogLevel
from nodes.base import Execution, NodeContext, NodeResult, NodeType
from nodes.llm_client import (
    Completion,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderStatusError,
    shared_client,
)
from nodes.provider_limits import Permit, ProviderLimiter
from nodes.services import TokenSink
from nodes.settings import NodeSettings

DEFAULT_COMPLETION_ESTIMATE = 256
CHARS_PER_TOKEN = 4
JSON_FORMATS = frozenset({"json_object", "json_schema"})
FORMAT_NAMES = ("text", "json_object")
_VERSION_SEGMENT = re.compile(r"/v\d+$")
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class LlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="The model name the provider knows, e.g. gpt-4.")
    prompt: str = Field(min_length=1, description="The user message, usually a template.")
    system: str | None = Field(default=None, description="An optional system message.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Unset: the provider's default.")
    max_tokens: int | None = Field(default=None, ge=1, description="Unset: the provider's default.")
    response_format: str | dict[str, Any] | None = Field(
        default=None,
        description='"json_object" (or an OpenAI response_format object such as {"type": "json_schema", '
        "...}) asks for JSON; its fields then appear in the output beside `text`.",
    )
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Messages after the prompt, as OpenAI chat message objects: earlier turns of a "
        "conversation, e.g. an assistant's tool calls and the tool results.",
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Functions the model may call, as OpenAI tools ({"type": "function", "function": '
        '{"name", "description", "parameters"}}); the calls it asks for are the output\'s `tool_calls` '
        "(`id`, `name`, `arguments` as JSON text). The agent node runs them.",
    )
    stream: bool = Field(default=False, description="Stream tokens to the job's events as llm_token.")
    api_key: SecretStr | None = Field(
        default=None, description="Overrides LLM_API_KEY, usually {{secrets.name}}; never logged."
    )

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in FORMAT_NAMES:
            raise ValueError(f'must be "text", "json_object" or a response_format object, not {value!r}')
        if isinstance(value, dict) and not isinstance(value.get("type"), str):
            raise ValueError('a response_format object needs a "type", e.g. {"type": "json_object"}')
        return value

    @field_serializer("api_key", when_used="json")
    def _ship_api_key(self, value: SecretStr | None) -> str | None:
        """The rendered config travels to the executor as JSON; the key must arrive whole."""
        return value.get_secret_value() if value is not None else None

    @property
    def format_body(self) -> dict[str, Any] | None:
        if self.response_format is None or self.response_format == "text":
            return None
        if isinstance(self.response_format, str):
            return {"type": self.response_format}
        return self.response_format

    @property
    def wants_json(self) -> bool:
        return self.format_body is not None and self.format_body["type"] in JSON_FORMATS


class LlmNode(NodeType[LlmConfig]):
    type_name = "llm"
    description = (
        "Calls an OpenAI-compatible chat completions API; the output holds `text`, `model` and, for JSON "
        "replies, the reply's fields. Usage is recorded; 429 and 5xx are retried honouring Retry-After."
    )
    config_model = LlmConfig
    execution = Execution.IO

    async def execute(self, config: LlmConfig, ctx: NodeContext) -> NodeResult:
        call = _Call(config, ctx, ctx.services.settings)
        completion = await call.run()
        return NodeResult(output=_output(completion, config), usage=completion.usage)


class _Call:
    """One node attempt: up to LLM_MAX_ATTEMPTS HTTP requests, each under a limiter permit."""

    def __init__(self, config: LlmConfig, ctx: NodeContext, settings: NodeSettings) -> None:
        self.config, self.ctx, self.settings = config, ctx, settings
        self.url = chat_completions_url(settings.model_service_url)
        self.provider = provider_of(self.url)
        key = config.api_key or settings.llm_api_key
        self.api_key = key.get_secret_value() if key is not None else ""
        self.headers = {"Idempotency-Key": ctx.idempotency_key}
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"
        self.body = _request_body(config)
        self.estimate = _estimate_tokens(config)
        self.limiter: ProviderLimiter | None = ctx.services.llm_limiter
        self.emit: TokenSink | None = ctx.services.emit_token if config.stream else None
        self.emitted = 0
        self.client = shared_client(settings.llm_max_concurrency)

    async def run(self) -> Completion:
        attempts = self.settings.llm_max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt()
            except ProviderStatusError as exc:
                if exc.status != 429 and exc.status < 500:
                    raise NodeExecutionError(
                        f"LLM provider {self.provider} refused the request ({exc.status}): "
                        f"{self._clean(exc.message)}"
                    ) from None
                failure, retry_after = f"answered {exc.status}: {self._clean(exc.message)}", exc.retry_after_s
            except ProviderConnectionError as exc:
                failure, retry_after = f"could not be reached: {self._clean(str(exc))}", None
            if self.emitted:
                raise RetryableNodeError(
                    f"LLM provider {self.provider} {failure} after {self.emitted} streamed chunks"
                )
            if attempt == attempts:
                raise RetryableNodeError(f"LLM provider {self.provider} {failure} ({attempts} attempts)")
            await self._wait_before_retry(attempt, failure, retry_after)

    async def _attempt(self) -> Completion:
        permit: Permit | None = None
        if self.limiter is not None:
            permit = await self.limiter.acquire(self.provider, self.config.model, self.estimate)
        used = self.estimate
        try:
            if self.emit is not None:
                completion = await self.client.stream(
                    self.url, self.headers, self.body, self.settings.llm_request_timeout_s, self._on_text
                )
            else:
                completion = await self.client.complete(
                    self.url, self.headers, self.body, self.settings.llm_request_timeout_s
                )
            used = (completion.usage or {}).get("total_tokens", self.estimate)
            return completion
        except ProviderStatusError:
            used = 0
            raise
        except TimeoutError:
            raise NodeTimeoutError(
                f"LLM request to {self.provider} timed out after {self.settings.llm_request_timeout_s:g} s"
            ) from None
        except MalformedResponseError as exc:
            raise NodeExecutionError(
                f"LLM provider {self.provider} sent a malformed response: {self._clean(str(exc))}"
            ) from None
        finally:
            if permit is not None and self.limiter is not None:
                self.limiter.release(permit, used)

    async def _on_text(self, text: str) -> None:
        assert self.emit is not None
        self.emitted += 1
        await self.emit(text)

    async def _wait_before_retry(self, attempt: int, failure: str, retry_after: float | None) -> None:
        ceiling = self.settings.llm_backoff_max_s
        if retry_after is not None and retry_after > ceiling:
            raise RetryableNodeError(
                f"LLM provider {self.provider} {failure}; it asks to retry after {retry_after:g} s, "
                f"longer than LLM_BACKOFF_MAX_S ({ceiling:g} s)"
            )
        delay = retry_after if retry_after is not None else self._backoff(attempt)
        self.ctx.log(
            LogLevel.WARNING,
            f"LLM provider {self.provider} {failure}; retry {attempt + 1} of "
            f"{self.settings.llm_max_attempts} in {delay:.2f} s",
            {"provider": self.provider, "model": self.config.model, "wait_s": round(delay, 3)},
        )
        await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that many nodes failing together do not retry together."""
        delay = exponential_delay(attempt, self.settings.llm_backoff_base_s, self.settings.llm_backoff_max_s)
        return equal_jitter(delay)

    def _clean(self, message: str) -> str:
        """A provider may echo the key it was sent; it never reaches a log or an error."""
        return message.replace(self.api_key, "***") if self.api_key else message


def chat_completions_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeExecutionError(
            f"MODEL_SERVICE_URL must be an http:// or https:// URL with a host, not {base_url!r}"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if _VERSION_SEGMENT.search(path) else "/v1/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def provider_of(url: str) -> str:
    """The limiter's provider name: the API's host, with its port when one is given."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def _request_body(config: LlmConfig) -> dict[str, Any]:
    messages = [{"role": "system", "content": config.system}] if config.system else []
    messages.append({"role": "user", "content": config.prompt})
    messages.extend(config.messages)
    body: dict[str, Any] = {"model": config.model, "messages": messages}
    if config.tools:
        body["tools"] = config.tools
    if config.temperature is not None:
        body["temperature"] = config.temperature
    if config.max_tokens is not None:
        body["max_tokens"] = config.max_tokens
    if config.format_body is not None:
        body["response_format"] = config.format_body
    return body


def _estimate_tokens(config: LlmConfig) -> int:
    """What the limiter reserves before the call: the prompt at ~4 characters a token plus the
    completion's cap; the real count replaces it on release."""
    prompt_chars = len(config.prompt) + len(config.system or "")
    prompt_chars += sum(len(str(message.get("content") or "")) for message in config.messages)
    return prompt_chars // CHARS_PER_TOKEN + (config.max_tokens or DEFAULT_COMPLETION_ESTIMATE)


def json_fields(text: str) -> dict[str, Any] | None:
    """The reply's JSON object, also inside a ```json fence; None when it is not one."""
    candidate = text.strip()
    fenced = _FENCED.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    if not candidate.startswith("{"):
        return None
    try:
        value = json.loads(candidate)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _output(completion: Completion, config: LlmConfig) -> dict[str, Any]:
    """`text` and `model`, plus a JSON reply's fields at the top level (so {{classify.output.category}}
    works); `text` and `model` keep their meaning if the reply has fields of those names. A reply that
    calls tools has `tool_calls` instead of fields."""
    model = completion.model or config.model
    if completion.tool_calls:
        calls = [
            {"id": call.id, "name": call.name, "arguments": call.arguments} for call in completion.tool_calls
        ]
        return {"text": completion.text, "model": model, "tool_calls": calls}
    fields = json_fields(completion.text)
    if fields is None and config.wants_json:
        raise RetryableNodeError(
            f"the model was asked for a JSON object but replied with other text: {completion.text[:200]!r}"
        )
    return {**(fields or {}), "text": completion.text, "model": model}
