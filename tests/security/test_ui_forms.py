"""Attacks on the hosted form pages (/ui/): CSRF, cross-origin posts, and the credential
gate (throttle and silent lock) holding on the page login exactly as on the API login.

The form routes come from the app's route table (every POST route under ``/ui``): a form
added later is attacked automatically, and must first teach ``FORMS`` its fields.

ASVS v5.0.0-3.5.1 (CSRF defences on state-changing requests), v5.0.0-6.3.1 (brute force
controls on every authentication pathway), v5.0.0-3.7.2 (redirects only to allowed
destinations: see tests/integration/test_ui_pages.py for the ``next`` mutants).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from helpers import PASSWORD, api_login_status, csrf_from, new_email, running_app, ui_login
from keyturn.config import Settings

pytestmark = pytest.mark.anyio

WRONG = "not the right password 123"
TOKEN = "A" * 43
# page to GET for the CSRF token, and a form the route would otherwise accept.
FORMS: dict[str, tuple[str, dict[str, str]]] = {
    "/ui/login": ("/ui/login", {"email": "someone@example.com", "password": PASSWORD}),
    "/ui/signup": ("/ui/signup", {"email": "someone@example.com", "password": PASSWORD}),
    "/ui/forgot": ("/ui/forgot", {"email": "someone@example.com"}),
    "/ui/reset": (
        f"/ui/reset?token={TOKEN}",
        {"token": TOKEN, "password": PASSWORD, "password_confirm": PASSWORD},
    ),
    "/ui/verify": (f"/ui/verify?token={TOKEN}", {"token": TOKEN}),
    "/ui/email/confirm": (f"/ui/email/confirm?token={TOKEN}", {"token": TOKEN}),
    "/ui/logout": ("/ui/logout", {}),
    # Issue 15: the second step, the passkey sign-in and the security page. Signed out
    # and without an mfa cookie their pages redirect: the token check must refuse first.
    "/ui/login/passkey/options": ("/ui/login", {}),
    "/ui/login/passkey": ("/ui/login", {"credential": "{}"}),
    "/ui/mfa": ("/ui/login", {"method": "totp", "code": "123456"}),
    "/ui/mfa/webauthn/options": ("/ui/login", {}),
    "/ui/account/security/totp": ("/ui/login", {}),
    "/ui/account/security/totp/confirm": ("/ui/login", {"code": "123456"}),
    "/ui/account/security/totp/remove": ("/ui/login", {}),
    "/ui/account/security/recovery-codes": ("/ui/login", {}),
    "/ui/account/security/passkeys/options": ("/ui/login", {}),
    "/ui/account/security/passkeys": ("/ui/login", {"credential": "{}", "name": "Laptop"}),
    "/ui/account/security/passkeys/{passkey_id}/rename": ("/ui/login", {"name": "Laptop"}),
    "/ui/account/security/passkeys/{passkey_id}/delete": ("/ui/login", {}),
    # The consent form carries the authorization request; signed out and without a
    # client the page is an error page, so the token check must refuse first.
    "/ui/consent": (
        "/ui/consent",
        {
            "decision": "allow",
            "response_type": "code",
            "client_id": "A" * 22,
            "redirect_uri": "https://app.example.com/cb",
        },
    ),
}


def form_routes(all_routes: list[Any]) -> list[str]:
    # The route templates: a path parameter (a passkey id) is posted as its template,
    # which the route still matches; the form gate must refuse before it is read.
    return sorted(t.template for t in all_routes if t.method == "POST" and t.path.startswith("/ui"))


async def test_form_routes_are_derived_from_the_route_table(all_routes: list[Any]) -> None:
    found = form_routes(all_routes)
    assert {"/ui/login", "/ui/signup", "/ui/logout", "/ui/reset", "/ui/verify"} <= set(found)
    unknown = set(found) - set(FORMS)
    assert not unknown, f"teach FORMS the fields of {sorted(unknown)}"


async def test_every_form_refuses_a_missing_or_foreign_token(
    client: httpx.AsyncClient, all_routes: list[Any]
) -> None:
    """v5.0.0-3.5.1: no token, a token of another form, another browser's cookie: 403."""
    await client.get("/ui/login")
    login_token = csrf_from((await client.get("/ui/login")).text)
    for path in form_routes(all_routes):
        _page, fields = FORMS[path]
        missing = await client.post(path, data=fields)
        assert missing.status_code == 403, path
        assert missing.headers["content-type"].startswith("text/html")
        if path != "/ui/login":
            foreign = await client.post(path, data={**fields, "csrf_token": login_token})
            assert foreign.status_code == 403, path
    # Nothing was created by the refused signup.
    assert await api_login_status(client, "someone@example.com", PASSWORD) == 401


async def test_every_form_refuses_a_cross_origin_post(
    client: httpx.AsyncClient, all_routes: list[Any]
) -> None:
    """A valid token does not help a post that names another origin (or ``null``)."""
    for path in form_routes(all_routes):
        page, fields = FORMS[path]
        shown = await client.get(page)
        # Signed out, /ui/logout has no form and /ui/email/confirm redirects: any token
        # then; the origin check must refuse before the token is even looked at.
        has_form = shown.status_code == 200 and "csrf_token" in shown.text
        token = csrf_from(shown.text) if has_form else "x"
        for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
            answer = await client.post(
                path, data={**fields, "csrf_token": token}, headers={"origin": origin}
            )
            assert answer.status_code == 403, (path, origin)


@pytest.mark.parametrize("first", ["ui", "api"])
async def test_throttle_is_shared_by_page_and_api_login(
    make_settings: Callable[..., Settings], first: str
) -> None:
    """v5.0.0-6.3.1: failures on either pathway count toward one per-account+IP limit."""
    settings = make_settings(limit_failures_per_account_ip=4, limit_failures_per_account=1000)
    async with running_app(settings) as client:
        email = new_email()
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        order = ["ui", "api"] if first == "ui" else ["api", "ui"]
        for pathway in order:
            for _ in range(2):
                assert await attempt(client, pathway, email, WRONG) == 401
        # Four failures in all: both pathways are now throttled, even with the password.
        assert await attempt(client, "ui", email, PASSWORD) == 429
        assert await attempt(client, "api", email, PASSWORD) == 429


@pytest.mark.parametrize("failing", ["ui", "api"])
async def test_lock_holds_on_both_pathways(
    make_settings: Callable[..., Settings], failing: str
) -> None:
    """Failures on one pathway lock the account on the other, silently (like a wrong one)."""
    settings = make_settings(limit_failures_per_account_ip=1000, limit_failures_per_account=3)
    async with running_app(settings) as client:
        email = new_email()
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        for _ in range(4):
            assert await attempt(client, failing, email, WRONG) == 401
        assert await attempt(client, "ui", email, PASSWORD) == 401
        assert await attempt(client, "api", email, PASSWORD) == 401
        assert client.cookies.get("keyturn_session") is None


async def test_per_ip_ceiling_applies_to_page_posts(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_app(make_settings(limit_ip_per_minute=3)) as client:
        email = new_email()
        statuses = [(await ui_login(client, email, WRONG)).status_code for _ in range(4)]
        assert statuses[-1] == 429
        assert 401 in statuses


async def test_one_time_token_pages_are_throttled(
    make_settings: Callable[..., Settings],
) -> None:
    """Bad tokens on /ui/verify and /ui/reset go through the same per-IP failure gate."""
    async with running_app(make_settings(limit_failures_per_account_ip=2)) as client:
        for path in ("/ui/verify", "/ui/reset"):
            page, fields = FORMS[path]
            statuses = []
            for _ in range(3):
                token = csrf_from((await client.get(page)).text)
                answer = await client.post(path, data={**fields, "csrf_token": token})
                statuses.append(answer.status_code)
            assert statuses == [400, 400, 429], path


async def attempt(client: httpx.AsyncClient, pathway: str, email: str, password: str) -> int:
    if pathway == "ui":
        return (await ui_login(client, email, password)).status_code
    return await api_login_status(client, email, password)
