"""No credential in a log line (issue 13, hole 8): the filter configure_logging puts on every handler
redacts secret-named parameters, Authorization headers, bearer tokens and JWTs from the message, its
arguments, its extra fields and its exception, in the JSON and the text format; uvicorn's loggers write
through the same handlers even when uvicorn's own logging config gave them handlers of their own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.log_redaction import MASK, is_secret_name, redact_text
from config.log_setup import configure_logging
from config.settings import LogFormat
from tests.gateway.support import make_token

TOKEN = make_token("alice")
SECRET = "hunter2-very-secret"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "service.log"
    configure_logging("WARNING", LogFormat.TEXT, None)


MASKED_LINES = {
    "sse-query": (
        f'127.0.0.1:50312 - "GET /api/v1/jobs/j1/events?token={TOKEN}&after=3 HTTP/1.1" 200',
        '127.0.0.1:50312 - "GET /api/v1/jobs/j1/events?token=***&after=3 HTTP/1.1" 200',
    ),
    "websocket-query": (
        f"('127.0.0.1', 50312) - \"WebSocket /ws/jobs/j1?after=2&token={TOKEN}\" [accepted]",
        "('127.0.0.1', 50312) - \"WebSocket /ws/jobs/j1?after=2&token=***\" [accepted]",
    ),
    "secret-named-params": (
        f"GET /x?api_key={SECRET}&access_token={SECRET}&X-Amz-Signature={SECRET}&sig={SECRET}&page=2",
        "GET /x?api_key=***&access_token=***&X-Amz-Signature=***&sig=***&page=2",
    ),
    "passwords": (
        f"password={SECRET} passwd={SECRET} client_secret={SECRET}",
        "password=*** passwd=*** client_secret=***",
    ),
    "header-dict": (
        f"headers {{'Authorization': 'Bearer {TOKEN}', 'Host': 'a'}}",
        "headers {'Authorization': '***', 'Host': 'a'}",
    ),
    "basic-header": (f"Authorization: Basic {SECRET}", "Authorization: ***"),
    "webhook-signature": (
        f"X-Signature-256: sha256={'ab' * 32}, X-Hub-Signature-256: sha256={'cd' * 32}",
        "X-Signature-256: ***",
    ),
    "json-pairs": (
        f'{{"apikey": "{SECRET}", "credentials": "{SECRET}", "user": "bob"}}',
        '{"apikey": "***", "credentials": "***", "user": "bob"}',
    ),
    "bearer": (f"retrying with Bearer {TOKEN}", "retrying with Bearer ***"),
    "bare-jwt": (f"a token pasted in a path: /jobs/{TOKEN}/x", "a token pasted in a path: /jobs/***/x"),
}


@pytest.mark.parametrize(("line", "redacted"), MASKED_LINES.values(), ids=MASKED_LINES.keys())
def test_secrets_in_text_are_masked(line, redacted):
    assert redact_text(line) == redacted


@pytest.mark.parametrize(
    "line",
    [
        "missing bearer token",
        "usage prompt_tokens=10 completion_tokens=5 max_tokens=64",
        "GET /api/v1/workflows?limit=50&offset=0&monkey=1&keyword=x HTTP/1.1",
        "job 3f2a running: node greet completed in 0.01 s",
    ],
)
def test_text_without_secrets_is_left_alone(line):
    assert redact_text(line) == line


def test_secret_like_names():
    secret = ["token", "access_token", "api_key", "apikey", "Api-Key", "key", "secret", "password", "passwd"]
    secret += ["signature", "sig", "auth", "authorization", "credential", "X-Goog-Credential", "session_id"]
    assert all(is_secret_name(name) for name in secret)
    assert not any(is_secret_name(name) for name in ("tokens", "prompt_tokens", "monkey", "author", "page"))


def _log_everything(logger: logging.Logger) -> None:
    logger.warning("SSE opened %s", f"/api/v1/jobs/j1/events?token={TOKEN}")
    logger.warning(
        "call failed", extra={"url": f"https://api.example/v1?api_key={SECRET}", "api_key": SECRET}
    )
    logger.warning("request", extra={"request": {"headers": {"Authorization": f"Bearer {TOKEN}"}, "n": 1}})
    try:
        raise ValueError(f"could not reach https://api.example/v1?token={TOKEN}")
    except ValueError:
        logger.exception("with a traceback")


@pytest.mark.parametrize("fmt", [LogFormat.JSON, LogFormat.TEXT])
def test_every_part_of_a_record_is_redacted_in_both_formats(log_file, capsys, fmt):
    configure_logging("INFO", fmt, log_file)
    _log_everything(logging.getLogger("wf.redaction-test"))
    written = log_file.read_text()
    printed = capsys.readouterr().out
    for output in (written, printed):
        assert TOKEN not in output and SECRET not in output, output
        assert "token=***" in output and "with a traceback" in output and "ValueError" in output
    if fmt is LogFormat.JSON:
        entries = [json.loads(line) for line in written.splitlines()]
        assert entries[1]["api_key"] == MASK and entries[1]["url"] == "https://api.example/v1?api_key=***"
        assert entries[2]["request"] == {"headers": {"Authorization": MASK}, "n": 1}
        assert "token=***" in entries[3]["exception"]


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    access = logging.getLogger("uvicorn.access")
    level = access.level
    yield access
    access.setLevel(level)


def test_uvicorns_access_log_goes_through_the_service_handlers_redacted(log_file, access_logger):
    access = access_logger
    own = logging.StreamHandler()  # what uvicorn's default logging config installs
    access.addHandler(own)
    access.propagate = False
    access.setLevel(logging.INFO)
    configure_logging("INFO", LogFormat.JSON, log_file)
    assert own not in access.handlers and access.propagate
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/api/v1/jobs/j/events?token={TOKEN}", "1.1", 200
    )
    entry = json.loads(log_file.read_text().splitlines()[-1])
    assert entry["logger"] == "uvicorn.access"
    assert entry["message"] == '127.0.0.1:1 - "GET /api/v1/jobs/j/events?token=*** HTTP/1.1" 200'
