"""Passkeys and TOTP on the hosted pages in a real browser (issue 15).

A real ``keyturn serve`` whose issuer is ``http://localhost:PORT`` (browsers refuse an IP
address as WebAuthn RP ID, so the RP ID is ``localhost``), Debian's chromium driven by
Playwright, and the DevTools virtual authenticator (CDP ``WebAuthn.addVirtualAuthenticator``:
CTAP2, internal transport, resident keys, user verification) as the person's device;
pyotp plays the authenticator app. Each step is saved as a PNG in ``test-artifacts/ui/``.

Never ``playwright install``: the system chromium is used (DESIGN.md section 8).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from e2e.browser import launched, note_console, note_response, require_chromium, shot
from e2e.processes import LOW_ARGON2, Server, keyturn_env, spawn_server, wait_healthy
from helpers import PASSWORD, new_email
from net import free_port

pytestmark = pytest.mark.slow

sync_api = require_chromium()

# W3C WebAuthn Level 3 section 6.2 authenticator model, as DevTools emulates it.
VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched(sync_api) as chromium:
        yield chromium


@pytest.fixture
def localhost_server(tmp_path: Path) -> Iterator[Server]:
    """``keyturn serve`` on 127.0.0.1 with the issuer (and so the RP ID) on ``localhost``."""
    port = free_port()
    issuer = f"http://localhost:{port}"
    env = keyturn_env(tmp_path / "data", {**LOW_ARGON2, "KEYTURN_ISSUER": issuer})
    server = spawn_server(tmp_path, env, port=port)
    server.base_url = issuer
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


class Person:
    """One browser tab with a virtual authenticator, watching for page problems."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 900, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda message: note_console(self.problems, message))
        self.page.on("response", lambda response: note_response(self.problems, response))
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("WebAuthn.enable")
        added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
        self.cdp = cdp
        self.authenticator = added["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        return list(found["credentials"])

    def sign_up_and_verify(self) -> str:
        page, base = self.page, self.base
        email = new_email()
        page.goto(f"{base}/ui/signup")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url("**/ui/signup?status=sent")
        # The verification mail reaches the dev mailbox (the outbox worker is in-process).
        page.goto(f"{base}/ui/dev/mail")
        mail_link = page.get_by_role("link", name="Confirm your email address")
        for _ in range(300):
            if mail_link.count():
                break
            page.wait_for_timeout(100)
            page.reload()
        mail_link.first.click()
        page.locator("pre.mail-text a[href*='/ui/verify?token=']").click()
        page.get_by_role("button", name="Verify my address").click()
        page.wait_for_url(f"{base}/ui/verify?status=done")
        return email

    def password_step(self, email: str) -> None:
        page = self.page
        page.goto(f"{self.base}/ui/login")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()

    def signed_in(self) -> None:
        self.page.wait_for_url(f"{self.base}/ui/")
        assert self.page.get_by_role("heading", name="You are signed in").is_visible()

    def sign_out(self) -> None:
        page = self.page
        page.goto(f"{self.base}/ui/logout")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/ui/login?status=signed_out")

    def session_cookie(self) -> dict[str, Any] | None:
        found = [c for c in self.context.cookies() if c["name"] == "keyturn_session"]
        return found[0] if found else None


def test_passkey_register_passwordless_and_second_factor(
    localhost_server: Server, browser: Any
) -> None:
    person = Person(browser, localhost_server.base_url)
    page, base = person.page, person.base
    email = person.sign_up_and_verify()
    person.password_step(email)
    person.signed_in()

    # Register a passkey on the security page (the account's first factor).
    page.get_by_role("link", name="Sign-in security").click()
    page.wait_for_url(f"{base}/ui/account/security")
    assert "Passkeys do not work" not in page.content()  # localhost: no IP hint
    shot(page, "mfa-1-security")
    page.get_by_label("Name for the new passkey").fill("Virtual key")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("heading", name="Save your recovery codes").wait_for()
    assert page.locator("ol.codes li").count() == 10
    shot(page, "mfa-2-recovery-codes")
    (credential,) = person.credentials()
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{base}/ui/account/security")
    assert page.get_by_text("Virtual key", exact=True).is_visible()
    assert "<dt>Second step</dt><dd>On</dd>" in page.content()
    person.sign_out()
    assert person.session_cookie() is None

    # Passwordless and usernameless: the button the script shows on the sign-in page.
    shot(page, "mfa-3-sign-in-page")
    page.get_by_role("button", name="Sign in with a passkey").click()
    person.signed_in()
    shot(page, "mfa-3-passwordless-signed-in")
    person.sign_out()

    # The password is no longer enough: the passkey finishes the second step.
    person.password_step(email)
    page.wait_for_url(f"{base}/ui/mfa")
    assert person.session_cookie() is None
    (mfa,) = [c for c in person.context.cookies() if c["name"] == "keyturn_mfa"]
    assert mfa["httpOnly"] is True
    assert mfa["path"] == "/ui"
    shot(page, "mfa-4-second-step")
    page.get_by_role("button", name="Use a passkey").click()
    person.signed_in()
    assert not [c for c in person.context.cookies() if c["name"] == "keyturn_mfa"]

    # Rename, then remove the passkey: the second step is off again.
    page.goto(f"{base}/ui/account/security")
    page.get_by_label("New name").fill("Work laptop")
    page.get_by_role("button", name="Rename").click()
    page.wait_for_url(f"{base}/ui/account/security?status=passkey_renamed")
    assert page.get_by_text("Work laptop", exact=True).is_visible()
    page.get_by_role("button", name="Remove Work laptop").click()
    page.wait_for_url(f"{base}/ui/account/security?status=passkey_removed")
    assert "<dt>Second step</dt><dd>Off</dd>" in page.content()
    shot(page, "mfa-5-passkey-removed")
    assert person.problems == []
    person.context.close()


def test_totp_enrol_on_the_page_then_sign_in_with_a_code(
    localhost_server: Server, browser: Any
) -> None:
    person = Person(browser, localhost_server.base_url)
    page, base = person.page, person.base
    email = person.sign_up_and_verify()
    person.password_step(email)
    person.signed_in()
    page.goto(f"{base}/ui/account/security")
    page.get_by_role("button", name="Set up an authenticator app").click()
    page.locator(".qr svg").wait_for()
    shot(page, "mfa-6-totp-qr")
    secret = page.locator("#totp-secret").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("heading", name="Save your recovery codes").wait_for()
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{base}/ui/account/security")
    assert "<dt>Second step</dt><dd>On</dd>" in page.content()
    person.sign_out()

    person.password_step(email)
    page.wait_for_url(f"{base}/ui/mfa")
    # The next step's code: one step of drift is accepted, and the enrolment's code was
    # used up (a replay inside its window fails).
    page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + totp.interval))
    page.get_by_role("button", name="Verify").click()
    person.signed_in()
    shot(page, "mfa-7-signed-in-with-totp")
    assert person.problems == []
    person.context.close()
