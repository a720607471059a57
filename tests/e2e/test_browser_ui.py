"""The hosted pages in a real browser: Playwright (PyPI) driving Debian's chromium.

A real ``keyturn serve`` (cheap hashing, everything else default); the browser signs up,
signs in, sees the signed-in page, confirms the sign-out and ends up signed out. Each
page is saved as a PNG in ``test-artifacts/ui/`` (gitignored) for a person to look at.

Never ``playwright install``: browsers cannot be downloaded here; the system chromium is
used (DESIGN.md section 8). Without /usr/bin/chromium the test is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.browser import launched, note_console, note_response, require_chromium, shot
from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2
from helpers import PASSWORD, new_email

pytestmark = pytest.mark.slow

sync_api = require_chromium()


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched(sync_api) as chromium:
        yield chromium


def test_signup_login_logout_in_a_browser(start_server: StartServer, browser: Any) -> None:
    server = start_server(LOW_ARGON2)
    context = browser.new_context(viewport={"width": 900, "height": 760})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: note_console(problems, message))
    page.on("response", lambda response: note_response(problems, response))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    email = new_email()

    page.goto(f"{server.base_url}/ui/signup")
    assert page.title() == "Create an account · Keyturn"
    # Keyboard order: the skip link first, then the email field.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    # The stylesheet loaded under the page CSP: the button wears the brand colour.
    button = page.get_by_role("button", name="Create account")
    background = button.evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == "rgb(31, 111, 235)"
    shot(page, "1-signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Name (optional)").fill("Ada Lovelace")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/ui/signup?status=sent")
    assert page.get_by_role("heading", name="Check your mail").is_visible()
    shot(page, "2-signup-sent")

    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/ui/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("not the password 1")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").is_visible()
    assert "not correct" in page.get_by_role("alert").inner_text()
    shot(page, "3-login-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/")
    assert page.get_by_role("heading", name="You are signed in").is_visible()
    assert email in page.content()
    shot(page, "4-signed-in")
    (cookie,) = [c for c in context.cookies() if c["name"] == "keyturn_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # http issuer on loopback

    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url("**/ui/logout")
    assert page.get_by_role("heading", name="Sign out").is_visible()
    shot(page, "5-logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login?status=signed_out")
    assert page.get_by_role("status").inner_text() == "You are signed out."
    shot(page, "6-signed-out")
    assert not [c for c in context.cookies() if c["name"] == "keyturn_session"]
    page.goto(f"{server.base_url}/ui/")
    page.wait_for_url("**/ui/login")
    assert problems == []
    context.close()
