"""The browser tests' world: one real gateway in the embedded development mode (loopback, SQLite, the
embedded Redis, the session's Ray) whose LLM nodes call the OpenAI-compatible test server, and one
headless Debian Chromium. Each test gets a fresh browser context (its own sessionStorage), fails on any
console error the page logs (a Content-Security-Policy violation is one) or any dialog it opens, and
leaves a screenshot in its temporary directory."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from fastapi import FastAPI
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page

from config.settings import Settings
from tests.gateway.support import make_token
from tests.support import ray_test_api
from tests.support.browser import CHROMIUM, VIEWPORT, chromium
from tests.support.live_gateway import serve_gateway
from tests.support.openai_server import OpenAITestServer

JWT_SECRET = "ui-test-secret-0123456789abcdef0123"
LLM_LATENCY_S = 0.25
CHUNK_DELAY_S = 0.05
UI_TIMEOUT_MS = 20_000


@dataclass
class UiService:
    base_url: str
    app: FastAPI
    model: OpenAITestServer

    def token(self, sub: str) -> str:
        return make_token(sub, expires_in=3600, key=JWT_SECRET)

    def headers(self, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub)}"}


@pytest.fixture(scope="session")
def ui_model_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(latency_s=LLM_LATENCY_S, chunk_delay_s=CHUNK_DELAY_S) as server:
        yield server


@pytest.fixture
def model(ui_model_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    """The test LLM server, its latency and chunk delay put back after each test that changes them."""
    yield ui_model_server
    ui_model_server.latency_s = LLM_LATENCY_S
    ui_model_server.chunk_delay_s = CHUNK_DELAY_S


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ui_service(
    ray_cluster: object, ui_model_server: OpenAITestServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[UiService]:
    settings = Settings(
        _env_file=None,
        HOST="127.0.0.1",
        DATA_DIR=tmp_path_factory.mktemp("ui-service"),
        RAY_DASHBOARD=False,
        RAY_NAMESPACE=f"ui-test-{uuid.uuid4().hex[:8]}",
        JOB_ACTOR_MODE="reuse",
        MAX_ACTIVE_JOBS=4,
        WARM_POOL_SIZE=1,
        EXECUTOR_POOL_SIZE=1,
        JWT_SECRET=JWT_SECRET,
        EVENT_KEEPALIVE_S=1.0,
        LOG_LEVEL="WARNING",
        MODEL_SERVICE_URL=ui_model_server.url,
    )
    assert settings.embedded_development_mode
    ray_test_api.SESSION_NAMESPACES.add(settings.ray.namespace)
    async with serve_gateway(settings) as (base_url, app):
        yield UiService(base_url, app, ui_model_server)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install installs Debian's chromium")
    async with chromium() as launched:
        yield launched


@dataclass
class WatchedPage:
    """A page whose console errors, uncaught exceptions and dialogs are kept; `allow` names console errors
    a test expects (the browser logs every 4xx answer it loads as one)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def problems(self) -> list[str]:
        unexpected = [text for text in self.errors if not any(p.search(text) for p in self.allowed)]
        return unexpected + [f"dialog {text}" for text in self.dialogs]


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, tmp_path: Path) -> AsyncIterator[WatchedPage]:
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    opened = await context.new_page()
    watched = WatchedPage(opened)
    opened.on("console", watched.on_console)
    opened.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    opened.on("dialog", watched.on_dialog)
    try:
        yield watched
    finally:
        await opened.screenshot(path=tmp_path / "screenshot.png", full_page=True)
        await context.close()
    assert watched.problems() == [], "the page logged errors or opened dialogs"
