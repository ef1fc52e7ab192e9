"""Debian's Chromium driven by Playwright (`executable_path`: Playwright's own browser download cannot
work here), headless, with the flags that keep it from reaching out to the network on its own.

    async with chromium() as browser:
        context = await browser.new_context(viewport=VIEWPORT)   # a fresh profile: own sessionStorage
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1440, "height": 960}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium; Playwright gives it a fresh temporary --user-data-dir."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()
