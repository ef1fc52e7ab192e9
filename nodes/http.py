"""The http node: one HTTP request with retries, a response size cap and SSRF protection on every hop.

Redirects are followed here, not by the client, so each hop's URL is checked by the address policy and
its host resolved through the checking resolver (nodes/ssrf.py). When a redirect leaves the origin, the
headers set from templates and those named like credentials are not sent on, unless the node keeps them
(`keep_headers_on_redirect`). Transient failures (connection errors, timeouts, 408/425/429/500/502/503/
504) are retried inside the node with exponential backoff that honours Retry-After; what is left after
the node's own retries is raised as retryable, so the job's retry policy decides whether to run the node
again.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from yarl import URL

from engine.backoff import equal_jitter, exponential_delay, retry_after_s
from engine.errors import NodeExecutionError, NodeTimeoutError, Problem, RetryableNodeError
from engine.records import LogLevel
from engine.templating import TemplateContext
from nodes.base import Execution, LogSink, NodeContext, NodeResult, NodeType
from nodes.settings import NodeSettings
from nodes.ssrf import AddressPolicy, AddressRefusedError, display_url, pinned_connector

Scalar = str | int | float | bool
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_NAME = re.compile(
    r"auth|cookie|key|token|secret|passw(or)?d|credential|session|signature|jwt|csrf|xsrf", re.IGNORECASE
)
"""A header whose name contains one of these is taken for a credential (Authorization, X-Api-Key, ...)."""
NOT_CREDENTIALS = frozenset({"idempotency-key"})
TEMPLATED_HEADERS = "templated_headers"
BODY_HEADERS = ("content-type", "content-length", "content-encoding")
MAX_RETRY_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
ERROR_BODY_CHARS = 500
READ_CHUNK_BYTES = 64 * 2**10
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NOT_FOUND_DNS_ERRORS = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = "GET"
    url: str = Field(min_length=1, description="An http or https URL; private addresses are refused.")
    headers: dict[str, Scalar] = Field(default_factory=dict)
    query: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Added to the URL's own query parameters."
    )
    body: Any = Field(
        default=None, description="A string is sent as text; any other JSON value is sent as JSON."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=600, description="Per attempt, redirects included (default HTTP_TIMEOUT_S)."
    )
    max_response_bytes: int | None = Field(
        default=None, gt=0, description="At most HTTP_MAX_RESPONSE_BYTES, which is also the default."
    )
    response_type: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: JSON when the response's Content-Type says JSON, else text."
    )
    retries: int = Field(default=2, ge=0, le=10, description="Extra attempts after a transient failure.")
    retry_backoff_s: float = Field(default=0.5, ge=0, le=60, description="The first wait; it doubles.")
    follow_redirects: bool = True
    max_redirects: int = Field(default=5, ge=0, le=20)
    fail_on_status: bool = Field(
        default=True, description="Fail the node on a 4xx or 5xx; when false the status is just output."
    )
    keep_headers_on_redirect: bool = Field(
        default=False,
        description=(
            "Also send the headers set from templates and those named like credentials (Authorization, "
            "Cookie, X-Api-Key, *-Token, ...) when a redirect leads to another scheme, host or port; by "
            "default they are dropped there."
        ),
    )
    templated_headers: SkipJsonSchema[list[str]] = Field(
        default_factory=list,
        description="Set by the service when it renders the config: the headers whose value was a template.",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper_case_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, Scalar]) -> dict[str, Scalar]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if any(char in str(value) for char in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break or NUL")
        return headers


@dataclass(frozen=True)
class _Request:
    method: str
    url: URL
    headers: CIMultiDict[str]
    body: bytes | None
    origin_bound: frozenset[str] = frozenset()
    """Lower-case names of the headers that are not sent on when a redirect leaves the origin."""


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    content_type: str
    charset: str | None
    body: bytes


class HttpNode(NodeType[HttpConfig]):
    type_name = "http"
    description = (
        "Calls an HTTP API: method, url, headers, query and body; the output is the response's status, "
        "headers and body (parsed JSON or text). Loopback, private and metadata addresses are refused."
    )
    config_model = HttpConfig
    execution = Execution.IO

    def validate_config(self, config: dict[str, Any]) -> list[Problem]:
        problems = super().validate_config(config)
        url = config.get("url")
        if isinstance(url, str) and url and "{{" not in url:
            problem = _static_url_problem(url)
            if problem is not None:
                problems.append(Problem(problem, field="config.url"))
        if TEMPLATED_HEADERS in config:
            problems.append(
                Problem(
                    "is set by the service when it renders the config; leave it out",
                    field=f"config.{TEMPLATED_HEADERS}",
                )
            )
        return problems

    def render_config(self, config: dict[str, Any], scope: TemplateContext, node_id: str) -> HttpConfig:
        """The rendered config, with the names of the headers whose value was a template: those are not
        sent to another origin (the config travels as JSON to where the node runs, so it says so itself)."""
        written = {key: value for key, value in config.items() if key != TEMPLATED_HEADERS}
        parsed = super().render_config(written, scope, node_id)
        headers = written.get("headers")
        if isinstance(headers, str):
            templated = list(parsed.headers) if "{{" in headers else []
        elif isinstance(headers, dict):
            templated = [name for name, value in headers.items() if isinstance(value, str) and "{{" in value]
        else:
            templated = []
        return parsed.model_copy(update={TEMPLATED_HEADERS: templated})

    async def execute(self, config: HttpConfig, ctx: NodeContext) -> NodeResult:
        settings = ctx.services.settings
        max_bytes = _max_response_bytes(config, settings)
        request = _build_request(config, ctx)
        policy = AddressPolicy.from_settings(settings)
        exchange = _Exchange(
            http_clients.session(policy, ctx.services.dns_resolver, settings.http_max_connections),
            policy,
            config,
            timeout_s=config.timeout_s or settings.http_timeout_s,
            max_bytes=max_bytes,
            log=ctx.log,
        )
        started = time.monotonic()
        response, attempts = await _with_retries(exchange, request, config, ctx)
        shown = f"{request.method} {display_url(request.url)}"
        ctx.log(
            LogLevel.INFO,
            f"{shown} -> {response.status}",
            {
                "status": response.status,
                "attempts": attempts,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "response_bytes": len(response.body),
            },
        )
        if response.status >= 400 and config.fail_on_status:
            raise _status_error(shown, response, attempts)
        return NodeResult(
            output={
                "status": response.status,
                "headers": _headers_output(response.headers),
                "body": _parse_body(response, config.response_type, shown, ctx),
            }
        )


def _static_url_problem(url: str) -> str | None:
    try:
        parsed = URL(url)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"only http and https URLs are allowed, not {parsed.scheme or 'a URL without scheme'!r}"
    if not parsed.host:
        return "the URL has no host"
    return None


def _max_response_bytes(config: HttpConfig, settings: NodeSettings) -> int:
    ceiling = settings.http_max_response_bytes
    if config.max_response_bytes is None:
        return ceiling
    if config.max_response_bytes > ceiling:
        raise NodeExecutionError(
            f"max_response_bytes {config.max_response_bytes} is above this service's limit of {ceiling} "
            "bytes (HTTP_MAX_RESPONSE_BYTES)"
        )
    return config.max_response_bytes


def _build_request(config: HttpConfig, ctx: NodeContext) -> _Request:
    try:
        url = URL(config.url)
    except ValueError as exc:
        raise NodeExecutionError(f"config.url {config.url!r} is not a valid URL: {exc}") from None
    if config.query:
        url = url.extend_query(
            {
                name: [_as_text(item) for item in value] if isinstance(value, list) else _as_text(value)
                for name, value in config.query.items()
            }
        )
    headers = CIMultiDict({name: _as_text(value) for name, value in config.headers.items()})
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    body: bytes | None = None
    if isinstance(config.body, str):
        body = config.body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif config.body is not None:
        try:
            body = json.dumps(config.body, ensure_ascii=False, allow_nan=False).encode()
        except ValueError as exc:
            raise NodeExecutionError(f"config.body cannot be sent as JSON: {exc}") from None
        headers.setdefault("Content-Type", "application/json")
    return _Request(config.method, url, headers, body, _origin_bound(config, headers))


def _origin_bound(config: HttpConfig, headers: CIMultiDict[str]) -> frozenset[str]:
    """The headers a redirect to another origin must not carry: those set from templates (they may hold
    secrets) and those named like credentials, unless the node keeps them."""
    if config.keep_headers_on_redirect:
        return frozenset()
    templated = {name.lower() for name in config.templated_headers}
    return frozenset(
        name.lower()
        for name in headers
        if name.lower() in templated
        or (name.lower() not in NOT_CREDENTIALS and CREDENTIAL_NAME.search(name) is not None)
    )


def _as_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Exchange:
    """One attempt: the request and the redirects it leads to, each hop checked, within one timeout."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: AddressPolicy,
        config: HttpConfig,
        *,
        timeout_s: float,
        max_bytes: int,
        log: LogSink,
    ) -> None:
        self._session = session
        self._policy = policy
        self._config = config
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._log = log

    async def attempt(self, request: _Request) -> _Response:
        shown = f"{request.method} {display_url(request.url)}"
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(request, shown)
        except TimeoutError:
            raise NodeTimeoutError(f"{shown} timed out after {self._timeout_s:g} s") from None
        except aiohttp.ClientSSLError as exc:
            raise NodeExecutionError(f"{shown} failed: TLS error: {exc}") from None
        except aiohttp.ClientConnectorDNSError as exc:
            unknown_name = exc.os_error.errno in _NOT_FOUND_DNS_ERRORS
            error_class = NodeExecutionError if unknown_name else RetryableNodeError
            raise error_class(f"{shown} failed: could not resolve {exc.host}: {exc.os_error}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise RetryableNodeError(f"{shown} failed: {type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:
            raise NodeExecutionError(f"{shown} failed: {type(exc).__name__}: {exc}") from None

    async def _follow(self, request: _Request, shown: str) -> _Response:
        for hop in range(self._config.max_redirects + 1):
            where = shown if hop == 0 else f"{shown} (redirect {hop} to {display_url(request.url)})"
            try:
                self._policy.check_url(request.url)
                async with self._session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.body,
                    allow_redirects=False,
                ) as response:
                    location = response.headers.get("Location")
                    if self._config.follow_redirects and response.status in REDIRECT_STATUSES and location:
                        request = self._redirected(request, response.status, location, where)
                        continue
                    return _Response(
                        status=response.status,
                        reason=response.reason or "",
                        headers=response.headers,
                        content_type=response.content_type,
                        charset=response.charset,
                        body=await self._read_body(response, where),
                    )
            except AddressRefusedError as exc:
                raise AddressRefusedError(f"{where}: {exc.message}") from None
        limit = self._config.max_redirects
        raise NodeExecutionError(f"{shown} was redirected more than max_redirects={limit} times")

    async def _read_body(self, response: aiohttp.ClientResponse, where: str) -> bytes:
        """The body, decompressed, refused as soon as it grows past the cap, not after reading it all."""
        too_large = NodeExecutionError(
            f"{where}: the response body is larger than max_response_bytes ({self._max_bytes} bytes)"
        )
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self._max_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _redirected(self, request: _Request, status: int, location: str, where: str) -> _Request:
        try:
            target = request.url.join(URL(location))
        except ValueError as exc:
            raise NodeExecutionError(f"{where} redirected to an invalid URL {location!r}: {exc}") from None
        headers = request.headers.copy()
        method, body = request.method, request.body
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, body = "GET", None
            for name in BODY_HEADERS:
                headers.popall(name, None)
        if _origin(target) != _origin(request.url):
            dropped = sorted({name for name in headers if name.lower() in request.origin_bound})
            for name in dropped:
                headers.popall(name, None)
            if dropped:
                self._log(
                    LogLevel.INFO,
                    f"{where}: not sending {', '.join(dropped)} to {display_url(target)}, another origin "
                    "(keep_headers_on_redirect: true sends them)",
                    {"dropped_headers": dropped},
                )
        return _Request(method, target, headers, body, request.origin_bound)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


async def _with_retries(
    exchange: _Exchange, request: _Request, config: HttpConfig, ctx: NodeContext
) -> tuple[_Response, int]:
    """The first response that is not transient, or the last one when retries are used up; a transient
    error after the last attempt is raised."""
    shown = f"{request.method} {display_url(request.url)}"
    attempt = 0
    while True:
        attempt += 1
        response: _Response | None = None
        error: NodeExecutionError | None = None
        try:
            response = await exchange.attempt(request)
        except NodeExecutionError as exc:
            if not exc.retryable:
                raise
            error, failure, retry_after = exc, exc.message, None
        else:
            if response.status not in RETRYABLE_STATUSES:
                return response, attempt
            failure, retry_after = f"{shown} answered {response.status}", retry_after_s(response.headers)
        waits_too_long = retry_after is not None and retry_after > MAX_RETRY_AFTER_S
        if attempt > config.retries or waits_too_long:
            if error is not None:
                raise error if attempt == 1 else type(error)(f"{failure} (after {attempt} attempts)")
            assert response is not None
            return response, attempt
        backoff = equal_jitter(exponential_delay(attempt, config.retry_backoff_s, MAX_BACKOFF_S))
        delay = max(backoff, retry_after or 0.0)
        ctx.log(
            LogLevel.WARNING,
            f"{failure}; retrying in {delay:.2f} s (attempt {attempt + 1} of {config.retries + 1})",
            {"attempt": attempt, "delay_s": round(delay, 3)},
        )
        await asyncio.sleep(delay)


def _status_error(shown: str, response: _Response, attempts: int) -> NodeExecutionError:
    excerpt = response.body[:ERROR_BODY_CHARS].decode(response.charset or "utf-8", errors="replace").strip()
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    message = f"{shown} answered {response.status} {response.reason}{tried}"
    retry_after = retry_after_s(response.headers)
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
        message += f" (the server asks to retry after {retry_after:.0f} s)"
    if excerpt:
        message += f": {excerpt}"
    if response.status in RETRYABLE_STATUSES:
        return RetryableNodeError(message)
    return NodeExecutionError(message)


def _headers_output(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Lower-case names; a header sent several times becomes one comma-joined value."""
    output: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        output[key] = f"{output[key]}, {value}" if key in output else value
    return output


def _parse_body(response: _Response, response_type: str, shown: str, ctx: NodeContext) -> Any:
    text = _decode(response.body, response.charset)
    is_json = response.content_type == "application/json" or response.content_type.endswith("+json")
    if response_type == "text" or (response_type == "auto" and not is_json):
        return text
    if not text.strip():
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if response_type == "json":
            raise NodeExecutionError(
                f"{shown} did not answer valid JSON ({exc}); the body starts with {text[:200]!r}"
            ) from None
        ctx.log(
            LogLevel.WARNING,
            f"{shown} answered {response.content_type} that is not valid JSON ({exc}); output as text",
            {},
        )
        return text


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class _ClientKey:
    policy: AddressPolicy
    resolver: AbstractResolver | None
    max_connections: int


class HttpClients:
    """One aiohttp session per event loop, address policy and resolver, made on first use and kept: its
    pool reuses connections across requests. No cookie jar (requests of different jobs must not share
    cookies) and no proxy settings from the environment (a proxy would connect to unchecked addresses)."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[_ClientKey, aiohttp.ClientSession]
        ] = weakref.WeakKeyDictionary()

    def session(
        self, policy: AddressPolicy, resolver: AbstractResolver | None, max_connections: int
    ) -> aiohttp.ClientSession:
        sessions = self._sessions.setdefault(asyncio.get_running_loop(), {})
        key = _ClientKey(policy, resolver, max_connections)
        session = sessions.get(key)
        if session is None or session.closed:
            session = sessions[key] = aiohttp.ClientSession(
                connector=pinned_connector(policy, resolver, max_connections),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return session

    async def close(self) -> None:
        """Close the running event loop's sessions. The service's processes end with their loops, so it never
        needs to; a caller that keeps one loop across many runs (the test suite) calls it to start afresh."""
        sessions = self._sessions.pop(asyncio.get_running_loop(), {})
        for session in sessions.values():
            await session.close()


http_clients = HttpClients()
