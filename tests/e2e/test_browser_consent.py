"""The OAuth consent flow in a real browser: Playwright (PyPI) driving Debian's chromium.

A real ``keyturn serve``; a client with a loopback redirect URI is registered through
the admin API. The browser opens the authorization request, signs in on /ui/login, grants
consent and lands on the client's redirect URI with a code. The landing is intercepted
with Playwright's route API (nothing listens there), so the test also proves the page CSP
(``form-action``) lets the browser follow the redirect to the client. Each page is saved
as a PNG in ``test-artifacts/ui/`` (gitignored).

Never ``playwright install``: the system chromium is used; without it the test is skipped.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from e2e.browser import launched, require_chromium, shot
from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2, Server, keyturn_env, run_keyturn
from helpers import PASSWORD, new_email

pytestmark = pytest.mark.slow

CALLBACK = "http://127.0.0.1:9/cb"  # loopback; answered by the route below, never dialled
sync_api = require_chromium()


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched(sync_api) as chromium:
        yield chromium


def registered_client(server: Server) -> dict[str, Any]:
    """An admin from the CLI, then a client through the admin API."""
    admin = new_email()
    created = run_keyturn(
        ["users", "create-admin", "--email", admin, "--password-stdin"],
        keyturn_env(server.data_dir, LOW_ARGON2),
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    with server.client() as http:
        login = http.post("/v1/auth/login", json={"email": admin, "password": PASSWORD})
        assert login.status_code == 200, login.text
        answer = http.post(
            "/v1/admin/clients",
            json={
                "client_name": "Photo Printer",
                "redirect_uris": [CALLBACK],
                "scope": "openid profile email offline_access",
                "grant_types": ["authorization_code", "refresh_token"],
            },
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_consent_in_a_browser(start_server: StartServer, browser: Any) -> None:
    server = start_server(LOW_ARGON2)
    oauth_client = registered_client(server)
    email = new_email()
    with server.client() as http:
        signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(12)
    request = {
        "response_type": "code",
        "client_id": oauth_client["client_id"],
        "redirect_uri": CALLBACK,
        "scope": "openid profile email offline_access",
        "state": state,
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }

    context = browser.new_context(viewport={"width": 900, "height": 760})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    landed: list[str] = []

    def landing(route: Any) -> None:
        landed.append(route.request.url)
        route.fulfill(
            status=200,
            content_type="text/html",
            body="<!doctype html><title>Photo Printer</title><h1>Photo Printer: signed in</h1>",
        )

    page.route(CALLBACK + "?*", landing)

    page.goto(f"{server.base_url}/oauth2/authorize?{urlencode(request)}")
    page.wait_for_url("**/ui/login?**")
    shot(page, "oauth-1-login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/consent?**")
    assert "Photo Printer" in page.content()
    assert email in page.content()
    shot(page, "oauth-2-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(CALLBACK + "?**")
    shot(page, "oauth-3-landing")
    assert len(landed) == 1
    answer = dict(parse_qsl(urlsplit(landed[0]).query))
    assert answer["state"] == state
    assert len(answer["code"]) == 43
    assert answer["iss"]

    # The code is good: redeemed at the token endpoint by the client.
    with server.client() as http:
        redeemed = http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
            auth=httpx.BasicAuth(oauth_client["client_id"], oauth_client["client_secret"]),
        )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["id_token"]
    assert problems == []
    context.close()
