"""Signing in through the page: a development token for a typed name (this service is in the embedded
development mode), a pasted token, and a refused one; the token stays in the tab's sessionStorage."""

from __future__ import annotations

import pytest

from tests.ui.support import sign_in_as, ui_url

pytestmark = pytest.mark.timeout(90)


async def test_a_development_token_signs_in_and_lives_in_session_storage_only(page, ui_service):
    await sign_in_as(page.page, ui_service.base_url, "dora")
    assert page.page.url.endswith("#/workflows")
    stored = await page.page.evaluate("() => sessionStorage.getItem('workflow-service.token')")
    assert ui_service.app.state.verifier.verify(stored).subject == "dora"
    assert await page.page.evaluate("() => localStorage.length") == 0
    assert (await page.page.context.cookies()) == []
    await page.page.click("#sign-out")
    await page.page.wait_for_selector("#token-form")
    assert await page.page.evaluate("() => sessionStorage.length") == 0


async def test_a_pasted_token_signs_in_and_a_refused_one_says_why(page, ui_service):
    page.allow("status of 401")
    await page.page.goto(ui_url(ui_service.base_url, "jobs"))
    await page.page.wait_for_selector("#token-form")
    await page.page.fill("#token", "not-a-token")
    await page.page.click("#token-submit")
    await page.page.wait_for_selector("#signin-status:has-text('malformed token')")
    await page.page.fill("#token", ui_service.token("pat"))
    await page.page.click("#token-submit")
    await page.page.wait_for_selector("#signed-in-as:text-is('pat')")
    assert page.page.url.endswith("#/jobs"), "back where the user was sent from"
