"""Logging in to the dashboard in a real browser: a good token, a bad one, logout, what
a viewer and an operator see on a failed run's page, and the Content-Security-Policy
holding."""

from __future__ import annotations

from playwright.async_api import Page, expect

from bot.dashboard import auth
from tests.acceptance.serve import Server
from tests.browser.conftest import ALICE, LOOP, VIC, url

pytestmark = LOOP


async def log_in(page: Page, baton: Server, token: str) -> None:
    await page.goto(url(baton, "/"))  # no session: sent to the login page, next=/
    await expect(page).to_have_url(url(baton, "/login?next=/"))
    await page.fill("#token", token)
    await page.click("button[type=submit]")


async def test_a_good_token_logs_in_and_logout_ends_it(page: Page, baton: Server) -> None:
    await log_in(page, baton, ALICE)
    await expect(page).to_have_url(url(baton, "/"))
    await expect(page.locator(".who")).to_contain_text("alice (operator)")
    cookie = next(c for c in await page.context.cookies() if c["name"] == auth.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    await page.click("text=Log out")

    await expect(page).to_have_url(url(baton, "/login"))
    await page.goto(url(baton, "/"))
    await expect(page).to_have_url(url(baton, "/login?next=/"))  # the session is gone


async def test_a_bad_token_stays_on_the_login_page(page: Page, baton: Server) -> None:
    await log_in(page, baton, "not-anybody's-token")
    await expect(page.locator(".message")).to_contain_text("That token is nobody's here")
    assert not [c for c in await page.context.cookies() if c["name"] == auth.COOKIE]


async def test_a_viewer_sees_no_action_an_operator_does(
    page: Page, baton: Server, failed_run: str
) -> None:
    await log_in(page, baton, VIC)
    await expect(page.locator(".who")).to_contain_text("vic (viewer)")
    await page.goto(url(baton, f"/runs/{failed_run}"))
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    await expect(page.locator("#action-retry-failed")).to_have_count(0)
    await page.click("text=Log out")

    await log_in(page, baton, ALICE)
    await page.goto(url(baton, f"/runs/{failed_run}"))
    await expect(page.locator("#action-retry-failed")).to_have_count(1)
    await expect(page.locator("#action-retry-failed")).to_contain_text("(boom)")


async def test_the_csp_is_sent_and_holds(page: Page, baton: Server) -> None:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    response = await page.goto(url(baton, "/login"))
    assert response is not None
    for name, value in auth.HEADERS.items():
        assert response.headers[name.lower()] == value
    await log_in(page, baton, ALICE)  # the runs page: htmx and its SSE extension load
    await page.wait_for_function("() => window.htmx !== undefined")
    refused = [text for text in violations if "Content Security Policy" in text]
    assert refused == []  # Baton's own pages break none of their policy
    # an inline script is what the policy forbids: the browser refuses to run it
    await page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.ran = true'; document.body.appendChild(s); }"""
    )
    assert await page.evaluate("() => window.ran === true") is False
    assert any("Content Security Policy" in text for text in violations), violations
