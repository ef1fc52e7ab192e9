"""The http node against a real aiohttp server on loopback (127.0.0.1, 127.0.0.2 and ::1, one port).

The server records, for every request, the local address the connection reached, so tests see where the
node really connected. Name resolution uses `FixedTableResolver` (see test_ssrf.py) where a test needs a
host name, because no DNS server can run here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from engine.errors import NodeExecutionError, NodeTimeoutError, RetryableNodeError
from engine.records import LogLevel
from engine.templating import TemplateContext
from nodes.base import NodeContext, NodeResult
from nodes.http import HttpNode, http_clients
from nodes.settings import NodeSettings
from nodes.ssrf import AddressRefusedError
from tests.nodes.ssrf_support import FixedTableResolver
from tests.support.node_services import standalone_services

NODE = HttpNode()


def settings(allowed_hosts: str = "127.0.0.1", allow_private: bool = False, **extra: Any) -> NodeSettings:
    return NodeSettings(HTTP_ALLOWED_HOSTS=allowed_hosts, HTTP_ALLOW_PRIVATE_NETWORKS=allow_private, **extra)


LOOPBACK_ALLOWED = settings()


@dataclass
class Seen:
    local_address: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int
    requests: list[Seen] = field(default_factory=list)
    flaky_counts: Counter[str] = field(default_factory=Counter)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def seen(self, path_prefix: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.path.startswith(path_prefix)]


def build_app(server: Server) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        server.requests.append(
            Seen(
                local_address=sockname[0] if sockname else "",
                method=request.method,
                path=request.path_qs,
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        return await handler(request)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        response = web.json_response(
            {
                "method": request.method,
                "query": {key: request.query.getall(key) for key in request.query},
                "headers": dict(request.headers),
                "body": body.decode(),
            }
        )
        if request.query.get("close"):
            response.force_close()
        return response

    async def text(request: web.Request) -> web.Response:
        response = web.Response(text="hello, wörld", headers={"X-Custom": "yes"})
        response.headers.add("X-Multi", "a")
        response.headers.add("X-Multi", "b")
        return response

    async def raw(request: web.Request) -> web.Response:
        return web.Response(
            body=request.query["body"].encode(), content_type=request.query.get("type", "text/plain")
        )

    async def sized(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse()
        if request.query.get("declare"):
            response.content_length = size
        await response.prepare(request)
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["delay"]))
        return web.json_response({"slept": True})

    async def flaky(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        server.flaky_counts[key] += 1
        if server.flaky_counts[key] <= int(request.query["failures"]):
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.json_response(
                {"error": "try again"}, status=int(request.query.get("status", 503)), headers=headers
            )
        return web.json_response({"attempt": server.flaky_counts[key]})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="the details of what went wrong")

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(
            status=int(request.query.get("status", 302)), headers={"Location": request.query["to"]}
        )

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/text", text)
    app.router.add_get("/raw", raw)
    app.router.add_get("/sized", sized)
    app.router.add_get("/slow", slow)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/redirect", redirect)
    return app


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    """One app listening on 127.0.0.1, 127.0.0.2 and ::1 at the same port."""
    first = socket.socket()
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    sockets = [first]
    for family, host in ((socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1")):
        extra = socket.socket(family)
        extra.bind((host, port))
        sockets.append(extra)
    instance = Server(port)
    runner = web.AppRunner(build_app(instance), access_log=None)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    yield instance
    await http_clients.close()
    await runner.cleanup()


@pytest.fixture(scope="module")
async def other_port() -> AsyncIterator[Server]:
    """The same app on 127.0.0.1 at another port: another origin on the same host."""
    instance = Server(0)
    runner = web.AppRunner(build_app(instance), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    instance.port = runner.addresses[0][1]
    yield instance
    await runner.cleanup()


@pytest.fixture(autouse=True)
def _forget_requests(server: Server, other_port: Server) -> None:
    server.requests.clear()
    other_port.requests.clear()


@dataclass
class Run:
    logs: list[tuple[LogLevel, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(
        self,
        config: dict[str, Any],
        node_settings: NodeSettings = LOOPBACK_ALLOWED,
        scope: TemplateContext | None = None,
        **services: Any,
    ) -> NodeResult:
        """Run the node on `config`; with a `scope`, `config` is a definition's config rendered against it
        and shipped as JSON, the way a job hands it to the executor actor."""
        ctx = NodeContext(
            job_id="job-1",
            workflow_id="wf-1",
            node_id="fetch",
            attempt=1,
            scope=scope or TemplateContext(),
            log=lambda level, message, data: self.logs.append((level, message, data)),
            services=standalone_services(node_settings, **services),
        )
        if scope is not None:
            config = NODE.render_config(config, scope, "fetch").model_dump(mode="json")
        return await NODE.execute(NODE.parse_config(config, "fetch"), ctx)


@pytest.fixture
def run() -> Run:
    return Run()


async def test_get_sends_query_and_headers_and_outputs_status_headers_and_json(server, run):
    result = await run(
        {
            "url": server.url("/echo?fixed=1"),
            "query": {"q": "hello world", "n": 3, "flag": True, "tags": ["a", "b"]},
            "headers": {"X-Api-Key": "k-123", "X-Count": 5},
        }
    )
    output = result.output
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "application/json; charset=utf-8"
    assert output["body"]["method"] == "GET"
    assert output["body"]["query"] == {
        "fixed": ["1"],
        "q": ["hello world"],
        "n": ["3"],
        "flag": ["true"],
        "tags": ["a", "b"],
    }
    [seen] = server.requests
    assert seen.headers["X-Api-Key"] == "k-123" and seen.headers["X-Count"] == "5"
    assert seen.headers["Idempotency-Key"] == "job-1:fetch:1"
    assert run.logs[-1][0] is LogLevel.INFO
    assert run.logs[-1][1] == f"GET {server.url('/echo')} -> 200"
    assert run.logs[-1][2]["attempts"] == 1


async def test_post_sends_a_json_body_as_json(server, run):
    body = {"data": {"items": [1, 2.5, None, True], "text": "héllo"}}
    result = await run({"method": "post", "url": server.url("/echo"), "body": body})
    assert result.output["body"]["method"] == "POST"
    [seen] = server.requests
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body.decode() == '{"data": {"items": [1, 2.5, null, true], "text": "héllo"}}'


async def test_text_body_is_sent_as_text_and_a_user_content_type_is_kept(server, run):
    await run({"method": "PUT", "url": server.url("/echo"), "body": "plain words"})
    await run(
        {
            "method": "PATCH",
            "url": server.url("/echo"),
            "body": "<a/>",
            "headers": {"content-type": "application/xml"},
        }
    )
    first, second = server.requests
    assert (first.method, first.headers["Content-Type"], first.body) == (
        "PUT",
        "text/plain; charset=utf-8",
        b"plain words",
    )
    assert (second.method, second.headers["Content-Type"], second.body) == (
        "PATCH",
        "application/xml",
        b"<a/>",
    )


async def test_a_user_set_idempotency_key_is_not_overridden(server, run):
    await run({"url": server.url("/echo"), "headers": {"idempotency-key": "mine-42"}})
    [seen] = server.requests
    assert [value for name, value in seen.headers.items() if name.lower() == "idempotency-key"] == ["mine-42"]


async def test_text_response_with_headers_in_the_output(server, run):
    result = await run({"url": server.url("/text")})
    assert result.output["status"] == 200
    assert result.output["body"] == "hello, wörld"
    assert result.output["headers"]["x-custom"] == "yes"
    assert result.output["headers"]["x-multi"] == "a, b"
    assert result.output["headers"]["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("content_type", "response_type", "body", "expected"),
    [
        ("application/json", "auto", '{"a": [1]}', {"a": [1]}),
        ("application/problem+json", "auto", '{"title": "x"}', {"title": "x"}),
        ("text/plain", "json", '{"a": 1}', {"a": 1}),
        ("application/json", "text", '{"a": 1}', '{"a": 1}'),
        ("text/plain", "auto", '{"a": 1}', '{"a": 1}'),
        ("application/json", "auto", "not json at all", "not json at all"),
    ],
)
async def test_response_parsing(server, run, content_type, response_type, body, expected):
    result = await run(
        {
            "url": server.url("/raw"),
            "query": {"body": body, "type": content_type},
            "response_type": response_type,
        }
    )
    assert result.output["body"] == expected


async def test_response_type_json_with_a_non_json_body_is_a_clear_error(server, run):
    with pytest.raises(NodeExecutionError, match=r"did not answer valid JSON .*'<html>oops</html>'"):
        await run(
            {"url": server.url("/raw"), "query": {"body": "<html>oops</html>"}, "response_type": "json"}
        )


@pytest.mark.parametrize("declare_length", [False, True])
async def test_a_response_over_the_size_cap_is_refused_without_reading_it_all(server, run, declare_length):
    query = {"size": 50 * 2**20, **({"declare": 1} if declare_length else {})}
    started = time.monotonic()
    with pytest.raises(
        NodeExecutionError, match=r"larger than max_response_bytes \(100000 bytes\)"
    ) as caught:
        await run({"url": server.url("/sized"), "query": query, "max_response_bytes": 100_000})
    assert caught.value.retryable is False
    assert time.monotonic() - started < 2


async def test_a_response_of_exactly_the_cap_is_read(server, run):
    result = await run(
        {"url": server.url("/sized"), "query": {"size": 100_000}, "max_response_bytes": 100_000}
    )
    assert len(result.output["body"]) == 100_000


async def test_the_service_limit_caps_max_response_bytes(server, run):
    capped = settings(HTTP_MAX_RESPONSE_BYTES=1000)
    with pytest.raises(NodeExecutionError, match=r"above this service's limit of 1000 bytes"):
        await run({"url": server.url("/echo"), "max_response_bytes": 5000}, capped)
    with pytest.raises(NodeExecutionError, match=r"larger than max_response_bytes \(1000 bytes\)"):
        await run({"url": server.url("/sized"), "query": {"size": 5000}}, capped)


async def test_timeout_is_a_retryable_timeout_error(server, run):
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match=r"GET http://127\.0\.0\.1:\d+/slow timed out after 0\.3 s"):
        await run({"url": server.url("/slow"), "query": {"delay": 5}, "timeout_s": 0.3, "retries": 0})
    assert time.monotonic() - started < 2


async def test_service_default_timeout_applies(server, run):
    with pytest.raises(NodeTimeoutError, match=r"timed out after 0\.2 s"):
        await run(
            {"url": server.url("/slow"), "query": {"delay": 5}, "retries": 0}, settings(HTTP_TIMEOUT_S=0.2)
        )


async def test_5xx_is_retried_with_the_same_idempotency_key_then_succeeds(server, run):
    result = await run(
        {
            "url": server.url("/flaky/five-oh-three"),
            "query": {"failures": 2},
            "retries": 2,
            "retry_backoff_s": 0.01,
        }
    )
    assert result.output == {
        "status": 200,
        "headers": result.output["headers"],
        "body": {"attempt": 3},
    }
    seen = server.seen("/flaky/five-oh-three")
    assert len(seen) == 3
    assert {request.headers["Idempotency-Key"] for request in seen} == {"job-1:fetch:1"}
    warnings = [message for level, message, _ in run.logs if level is LogLevel.WARNING]
    assert len(warnings) == 2 and "answered 503; retrying in" in warnings[0]
    assert run.logs[-1][2]["attempts"] == 3


async def test_429_waits_for_retry_after(server, run):
    started = time.monotonic()
    result = await run(
        {
            "url": server.url("/flaky/four-two-nine"),
            "query": {"failures": 1, "status": 429, "retry_after": 1},
            "retry_backoff_s": 0.01,
        }
    )
    assert result.output["status"] == 200
    assert time.monotonic() - started >= 1.0


async def test_5xx_left_after_the_retries_is_a_retryable_error(server, run):
    with pytest.raises(
        RetryableNodeError, match=r"answered 503 Service Unavailable after 2 attempts: .*try again"
    ):
        await run(
            {
                "url": server.url("/flaky/always"),
                "query": {"failures": 99},
                "retries": 1,
                "retry_backoff_s": 0.01,
            }
        )
    assert len(server.seen("/flaky/always")) == 2


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(server, run):
    started = time.monotonic()
    with pytest.raises(RetryableNodeError, match=r"answered 429 .*asks to retry after 3600 s"):
        await run(
            {
                "url": server.url("/flaky/patience"),
                "query": {"failures": 99, "status": 429, "retry_after": 3600},
            }
        )
    assert time.monotonic() - started < 1
    assert len(server.seen("/flaky/patience")) == 1


async def test_4xx_fails_at_once_naming_method_url_status_and_body(server, run):
    with pytest.raises(NodeExecutionError) as caught:
        await run({"method": "DELETE", "url": server.url("/status/404?token=secret")})
    assert caught.value.retryable is False
    assert caught.value.message == (
        f"DELETE {server.url('/status/404')} answered 404 Not Found: the details of what went wrong"
    )
    assert len(server.requests) == 1


async def test_with_fail_on_status_false_an_error_status_is_output(server, run):
    result = await run({"url": server.url("/status/418"), "fail_on_status": False})
    assert result.output["status"] == 418
    assert result.output["body"] == "the details of what went wrong"


async def test_connection_refused_is_retried_then_retryable(run):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(RetryableNodeError, match=r"ClientConnectorError.*\(after 2 attempts\)"):
        await run({"url": f"http://127.0.0.1:{port}/", "retries": 1, "retry_backoff_s": 0.01})
    assert sum(level is LogLevel.WARNING for level, _, _ in run.logs) == 1


async def test_redirects_are_followed_and_303_turns_post_into_get(server, run):
    target = server.url("/echo")
    result = await run(
        {
            "method": "POST",
            "url": server.url("/redirect"),
            "query": {"to": target, "status": 303},
            "body": {"a": 1},
        }
    )
    assert result.output["body"]["method"] == "GET"
    assert result.output["body"]["body"] == ""
    assert [seen.method for seen in server.requests] == ["POST", "GET"]


async def test_307_keeps_method_and_body(server, run):
    result = await run(
        {
            "method": "POST",
            "url": server.url("/redirect"),
            "query": {"to": "/echo", "status": 307},
            "body": "x",
        }
    )
    assert (result.output["body"]["method"], result.output["body"]["body"]) == ("POST", "x")


async def test_credentials_are_dropped_when_a_redirect_leaves_the_origin(server, run):
    both = settings(allowed_hosts="127.0.0.1, 127.0.0.2")
    headers = {"Authorization": "Bearer s3cret", "X-Trace": "t1"}
    await run({"url": server.url("/redirect"), "query": {"to": "/echo"}, "headers": headers}, both)
    await run(
        {
            "url": server.url("/redirect"),
            "query": {"to": server.url("/echo", "127.0.0.2")},
            "headers": headers,
        },
        both,
    )
    same_origin, other_origin = server.seen("/echo")
    assert same_origin.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in other_origin.headers
    assert other_origin.headers["X-Trace"] == "t1"
    assert other_origin.local_address == "127.0.0.2"


PRIVATE_OPEN = settings(allowed_hosts="", allow_private=True)
SECRET_SCOPE = TemplateContext(input={"request_id": "r-7"}, secrets={"tenant_token": "tt-secret"})
GUARDED_HEADERS = {
    "X-Api-Key": "k-static",
    "Authorization": "Bearer a-static",
    "Proxy-Authorization": "Basic p-static",
    "Cookie": "session=c-static",
    "X-Auth-Token": "t-static",
    "X-Client-Secret": "s-static",
    "Private-Token": "g-static",
    "X-Tenant": "{{secrets.tenant_token}}",
    "X-Request-Id": "{{input.request_id}}",
}
"""Named like credentials, or set from a template (X-Tenant, X-Request-Id): not sent to another origin."""
PLAIN_HEADERS = {"X-Trace": "t1", "Accept": "application/json"}


def header_values(seen: Seen) -> dict[str, str]:
    return {name.lower(): value for name, value in seen.headers.items()}


async def redirect_to(run: Run, first: Server, target: str, **config: Any) -> NodeResult:
    return await run(
        {
            "url": first.url("/redirect"),
            "query": {"to": target, "status": 307},
            "headers": {**GUARDED_HEADERS, **PLAIN_HEADERS},
            **config,
        },
        PRIVATE_OPEN,
        scope=SECRET_SCOPE,
    )


async def test_a_redirect_to_another_port_drops_templated_and_credential_headers(server, other_port, run):
    result = await redirect_to(run, server, other_port.url("/echo"))
    assert result.output["status"] == 200
    [first] = server.requests
    [second] = other_port.requests
    sent_first, sent_second = header_values(first), header_values(second)
    assert sent_first["x-api-key"] == "k-static" and sent_first["x-tenant"] == "tt-secret"
    assert sent_first["x-request-id"] == "r-7"
    for name in GUARDED_HEADERS:
        assert name.lower() not in sent_second, f"{name} reached the second origin"
    assert "tt-secret" not in str(second.headers) and "k-static" not in str(second.headers)
    assert sent_second["x-trace"] == "t1" and sent_second["accept"] == "application/json"
    assert sent_second["idempotency-key"] == "job-1:fetch:1"
    [(level, message, data)] = [entry for entry in run.logs if "not sending" in entry[1]]
    assert level is LogLevel.INFO
    assert data == {"dropped_headers": sorted(GUARDED_HEADERS)}
    assert f"to {other_port.url('/echo')}, another origin" in message
    assert "static" not in message and "tt-secret" not in message


async def test_with_keep_headers_on_redirect_they_reach_the_other_origin(server, other_port, run):
    await redirect_to(run, server, other_port.url("/echo"), keep_headers_on_redirect=True)
    [second] = other_port.requests
    sent = header_values(second)
    assert sent["x-api-key"] == "k-static" and sent["authorization"] == "Bearer a-static"
    assert sent["x-tenant"] == "tt-secret" and sent["x-request-id"] == "r-7"
    assert not [entry for entry in run.logs if "not sending" in entry[1]]


async def test_a_same_origin_redirect_keeps_every_header(server, run):
    await redirect_to(run, server, "/echo")
    first, second = server.requests
    assert header_values(second) == header_values(first)
    assert header_values(second)["x-tenant"] == "tt-secret"


async def test_a_scheme_change_is_another_origin(server, run):
    """http -> https on the same host and port: the headers are dropped before the (failing) TLS hop."""
    with pytest.raises(NodeExecutionError):
        await redirect_to(run, server, server.url("/echo").replace("http://", "https://"), retries=0)
    assert [entry[2] for entry in run.logs if "not sending" in entry[1]] == [
        {"dropped_headers": sorted(GUARDED_HEADERS)}
    ]


async def test_headers_rendered_from_a_whole_template_are_all_dropped_at_another_origin(
    server, other_port, run
):
    scope = TemplateContext(input={"headers": {"X-Anything": "from-input", "X-Other": "2"}})
    await run(
        {
            "url": server.url("/redirect"),
            "query": {"to": other_port.url("/echo")},
            "headers": "{{input.headers}}",
        },
        PRIVATE_OPEN,
        scope=scope,
    )
    assert header_values(server.requests[0])["x-anything"] == "from-input"
    sent = header_values(other_port.requests[0])
    assert "x-anything" not in sent and "x-other" not in sent


async def test_a_definition_cannot_claim_its_templated_headers(server, other_port, run):
    problems = NODE.validate_config({"url": "http://example.com", "templated_headers": []})
    assert [(problem.field, problem.message) for problem in problems] == [
        ("config.templated_headers", "is set by the service when it renders the config; leave it out")
    ]
    await redirect_to(run, server, other_port.url("/echo"), templated_headers=[])
    assert "x-tenant" not in header_values(other_port.requests[0])


def test_the_opt_in_is_in_the_schema_and_the_internal_field_is_not():
    properties = NODE.get_schema()["config_schema"]["properties"]
    assert properties["keep_headers_on_redirect"]["default"] is False
    assert "templated_headers" not in properties


async def test_without_follow_redirects_the_redirect_is_the_output(server, run):
    result = await run(
        {"url": server.url("/redirect"), "query": {"to": "http://localhost/"}, "follow_redirects": False}
    )
    assert result.output["status"] == 302
    assert result.output["headers"]["location"] == "http://localhost/"


async def test_too_many_redirects(server, run):
    loop_url = server.url("/redirect?to=/redirect%3Fto%3D/echo")
    with pytest.raises(NodeExecutionError, match="redirected more than max_redirects=1 times"):
        await run({"url": loop_url, "max_redirects": 1})
    assert len(server.requests) == 2


# SSRF, end to end


async def test_loopback_is_refused_by_default_and_nothing_is_sent(server, run):
    with pytest.raises(AddressRefusedError) as caught:
        await run({"url": server.url("/echo")}, NodeSettings(HTTP_ALLOW_PRIVATE_NETWORKS=False))
    assert caught.value.message.startswith(
        f"GET {server.url('/echo')}: refused: 127.0.0.1 is a loopback address"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.2:{port}/echo", "127.0.0.2 is a loopback address"),
        ("http://[::1]:{port}/echo", "::1 is a loopback address"),
        ("http://localhost:{port}/echo", "localhost is a loopback host name"),
        ("http://2130706434:{port}/echo", "2130706434 (that is 127.0.0.2) is a loopback address"),
        ("http://[::ffff:127.0.0.2]:{port}/echo", "IPv4-mapped IPv6 address of 127.0.0.2"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
    ],
)
async def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused(server, run, target, reason):
    """Only 127.0.0.1 is allowed; the server also listens on 127.0.0.2 and ::1, so a refusal is the
    policy's, not a failed connection (the control test below follows the same redirect when allowed)."""
    to = target.format(port=server.port)
    with pytest.raises(AddressRefusedError) as caught:
        await run({"url": server.url("/redirect"), "query": {"to": to}})
    assert caught.value.message.startswith(f"GET {server.url('/redirect')} (redirect 1 to ")
    assert reason in caught.value.message
    assert [seen.path.split("?")[0] for seen in server.requests] == ["/redirect"]


async def test_control_the_same_redirects_are_followed_when_private_networks_are_allowed(server, run):
    open_settings = settings(allowed_hosts="", allow_private=True)
    for to, address in (
        (server.url("/echo", "127.0.0.2"), "127.0.0.2"),
        (server.url("/echo", "[::1]"), "::1"),
        (server.url("/echo", "localhost"), None),
    ):
        server.requests.clear()
        result = await run({"url": server.url("/redirect"), "query": {"to": to}}, open_settings)
        assert result.output["status"] == 200
        assert len(server.requests) == 2
        if address is not None:
            assert server.requests[1].local_address == address


LOOPBACK_NOTATIONS = [
    # (host as written, what the guard says, whether the open control reaches the server)
    ("2130706433", "2130706433 (that is 127.0.0.1) is a loopback address", False),
    ("0x7f.1", "0x7f.1 (that is 127.0.0.1) is a loopback address", True),
    ("0X7F000001", "0x7f000001 (that is 127.0.0.1) is a loopback address", True),
    ("017700000001", "017700000001 (that is 127.0.0.1) is a loopback address", False),
    ("0177.0.0.1", "0177.0.0.1 (that is 127.0.0.1) is a loopback address", False),
    ("127.1", "127.1 (that is 127.0.0.1) is a loopback address", False),
    ("127.000.000.001", "127.000.000.001 (that is 127.0.0.1) is a loopback address", False),
    ("0x7f.0.0.0x1", "0x7f.0.0.0x1 (that is 127.0.0.1) is a loopback address", True),
    ("127.0.0.1.", "127.0.0.1 is a loopback address", False),
    ("\uff11\uff12\uff17.0.0.1", "127.0.0.1 is a loopback address", True),
    ("localhost.", "localhost is a loopback host name", False),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback", True),
    ("[0:0:0:0:0:ffff:7f00:1]", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback address", True),
    ("[::1%25lo]", "::1%lo is a loopback address", False),
    ("[0::1]", "::1 is a loopback address", True),
]


@pytest.mark.parametrize(("host", "reason", "reaches_when_open"), LOOPBACK_NOTATIONS)
async def test_every_notation_of_loopback_is_refused_and_nothing_is_sent(
    server, run, host, reason, reaches_when_open
):
    url = f"http://{host}:{server.port}/echo"
    with pytest.raises(AddressRefusedError) as caught:
        await run({"url": url, "retries": 0}, settings(allowed_hosts=""))
    assert reason in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize(("host", "reason", "reaches_when_open"), LOOPBACK_NOTATIONS)
async def test_control_with_private_networks_open_each_notation_reaches_loopback_or_no_address(
    server, run, host, reason, reaches_when_open
):
    """The refusal above is the guard's: opened, the same URL reaches the server, or is one that no layer
    below turns into an address (aiohttp refuses all-digit forms that are not canonical dotted quads and
    passes a zone id still percent-encoded; the C resolver refuses trailing dots)."""
    url = f"http://{host}:{server.port}/echo"
    if reaches_when_open:
        result = await run({"url": url, "retries": 0}, PRIVATE_OPEN)
        assert result.output["status"] == 200
        [seen] = server.requests
        assert seen.local_address in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    else:
        with pytest.raises(NodeExecutionError) as caught:
            await run({"url": url, "retries": 0}, PRIVATE_OPEN)
        assert not isinstance(caught.value, AddressRefusedError)
        assert server.requests == []


@pytest.mark.parametrize(
    ("url", "answers", "reason"),
    [
        ("http://[::ffff:0:7f00:1]:{port}/echo", {}, "IPv4-translated IPv6 address (::ffff:0:0:0/96"),
        ("http://translated.test:{port}/echo", {"translated.test": ["::ffff:0:7f00:1"]}, "IPv4-translated"),
        ("http://[64:ff9b:1::7f00:1]:{port}/echo", {}, "local-use NAT64 address (64:ff9b:1::/48, RFC 8215)"),
        ("http://nat64.test:{port}/echo", {"nat64.test": ["64:ff9b:1::a9fe:a9fe"]}, "local-use NAT64"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", {}, "a Teredo address (2001::/32"),
        ("http://192.0.0.192:{port}/echo", {}, "IETF protocol assignment address (192.0.0.0/24, RFC 6890"),
        ("http://ietf.test:{port}/echo", {"ietf.test": ["192.0.0.192"]}, "IETF protocol assignment address"),
        ("http://pcp.test:{port}/echo", {"pcp.test": ["192.0.0.9"]}, "IETF protocol assignment address"),
    ],
)
async def test_the_is_global_bypasses_are_refused_by_the_real_node(server, run, url, answers, reason):
    """What `ipaddress.is_global` let through on CPython 3.11.7 (CVE-2024-4032 and later registry
    entries): refused before any connection, whatever the name resolves to."""
    resolver = FixedTableResolver(answers)
    with pytest.raises(AddressRefusedError) as caught:
        await run(
            {"url": url.format(port=server.port), "retries": 0, "timeout_s": 2},
            settings(allowed_hosts=""),
            dns_resolver=resolver,
        )
    assert reason in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://[::ffff:0:7f00:1]:{port}/echo", {}),
        ("http://[64:ff9b:1::7f00:1]:{port}/echo", {}),
        ("http://nat64.test:{port}/echo", {"nat64.test": ["64:ff9b:1::a9fe:a9fe"]}),
    ],
)
async def test_the_forms_that_hide_an_ipv4_address_stay_refused_with_private_networks_open(
    server, run, url, answers
):
    with pytest.raises(AddressRefusedError, match="never allowed"):
        await run(
            {"url": url.format(port=server.port), "retries": 0, "timeout_s": 2},
            PRIVATE_OPEN,
            dns_resolver=FixedTableResolver(answers),
        )


async def test_a_host_name_resolving_to_loopback_is_refused_with_fixed_table_resolver(server, run):
    resolver = FixedTableResolver({"evil.test": ["127.0.0.2"]})
    url = f"http://evil.test:{server.port}/echo"
    with pytest.raises(AddressRefusedError) as caught:
        await run({"url": url}, dns_resolver=resolver)
    assert caught.value.message == (
        f"GET {url}: refused: 127.0.0.2 (resolved from evil.test) is a loopback address (127.0.0.0/8, RFC "
        "1122 §3.2.1.3); set HTTP_ALLOWED_HOSTS (or HTTP_ALLOW_PRIVATE_NETWORKS=true, for development) to "
        "allow it"
    )
    assert server.requests == []


async def test_a_host_name_resolving_to_loopback_is_allowed_by_the_setting_with_fixed_table_resolver(
    server, run
):
    resolver = FixedTableResolver({"evil.test": ["127.0.0.2"]})
    result = await run(
        {"url": f"http://evil.test:{server.port}/echo"},
        settings(allowed_hosts="", allow_private=True),
        dns_resolver=resolver,
    )
    assert result.output["status"] == 200
    [seen] = server.requests
    assert seen.local_address == "127.0.0.2"
    assert seen.headers["Host"] == f"evil.test:{server.port}"


async def test_a_redirect_to_a_name_resolving_to_metadata_is_refused_with_fixed_table_resolver(server, run):
    resolver = FixedTableResolver({"meta.test": ["169.254.169.254"]})
    with pytest.raises(
        AddressRefusedError, match=r"169\.254\.169\.254 \(resolved from meta\.test\) is a cloud"
    ):
        await run(
            {"url": server.url("/redirect"), "query": {"to": "http://meta.test/latest/"}},
            settings(allow_private=True),
            dns_resolver=resolver,
        )
    assert resolver.lookups == ["meta.test"]


class RebindingTableResolver(FixedTableResolver):
    """Answers each lookup of a name with the next address of its list, as a rebinding DNS server does."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        answers = await super().resolve(host, port, family)
        return [answers[min(len(self.lookups), len(answers)) - 1]]


async def test_each_connection_uses_the_address_its_one_lookup_checked_with_rebinding_table_resolver(
    server, run
):
    """The first lookup answers 127.0.0.1 (allowed), the next 127.0.0.2 (refused). Every connection
    resolves once, and connects to exactly the address that lookup returned and the policy checked."""
    resolver = RebindingTableResolver({"rebind.test": ["127.0.0.1", "127.0.0.2"]})
    url = f"http://rebind.test:{server.port}/echo"
    result = await run({"url": url, "query": {"close": 1}}, dns_resolver=resolver)
    assert result.output["status"] == 200
    assert resolver.lookups == ["rebind.test"]
    assert [seen.local_address for seen in server.requests] == ["127.0.0.1"]
    with pytest.raises(AddressRefusedError, match=r"127\.0\.0\.2 \(resolved from rebind\.test\)"):
        await run({"url": url, "query": {"close": 1}}, dns_resolver=resolver)
    assert resolver.lookups == ["rebind.test", "rebind.test"]
    assert len(server.requests) == 1


async def test_other_schemes_are_refused_at_definition_and_at_run_time(run):
    problems = NODE.validate_config({"url": "gopher://example.com/", "method": "GET"})
    assert [(problem.field, problem.message) for problem in problems] == [
        ("config.url", "only http and https URLs are allowed, not 'gopher'")
    ]
    assert NODE.validate_config({"url": "{{input.url}}", "timeout_s": "{{input.timeout}}"}) == []
    with pytest.raises(AddressRefusedError, match="only http and https URLs are allowed, not 'ftp'"):
        await run({"url": "ftp://example.com/file"})


def test_config_problems_are_named():
    problems = NODE.validate_config(
        {"url": "http://example.com", "method": "FETCH", "headers": {"Bad Name": "x", "X-Ok": "a\r\nb"}}
    )
    messages = {problem.field: problem.message for problem in problems}
    assert "config.method" in messages
    assert "'Bad Name' is not a valid header name" in messages["config.headers"]
