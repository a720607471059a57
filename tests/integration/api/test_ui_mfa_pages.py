"""The hosted second step and sign-in security pages (issue 15): /ui/mfa, the mfa cookie,
/ui/account/security, the passkey sign-in form and the one script.

Every test speaks HTTP to the real app (httpx + ASGITransport); pyotp plays the
authenticator app. The passkey ceremonies themselves run in a real browser
(tests/e2e/test_browser_mfa.py); here the forms around them are attacked.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
import time_machine
from fastapi import FastAPI

from helpers import PASSWORD, new_email, serving, ui_login
from keyturn.config import Settings
from oauth_helpers import auth_params, query_of, register
from passkey_helpers import ISSUER, authenticator

pytestmark = pytest.mark.anyio

SECURITY = "/ui/account/security"
_FORM_TOKEN = (
    r'<form [^>]*action="{action}"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)"'
)
_SECRET = re.compile(r'<code class="secret" id="totp-secret">([A-Z2-7]+)</code>')
_CODE = re.compile(r"<li><code>([^<]+)</code></li>")
_SCRIPT = re.compile(r'<script src="(/ui/static/webauthn\.[0-9a-f]{16}\.js)" defer></script>')
PASSKEY_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def token_for(html: str, action: str) -> str:
    """The CSRF token of the form posting to ``action`` on a page."""
    found = re.search(_FORM_TOKEN.format(action=re.escape(action)), html)
    assert found is not None, f"no form posting to {action}"
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text
    return await client.post(action, data={"csrf_token": token_for(shown.text, action), **fields})


def later_code(totp: pyotp.TOTP) -> str:
    """The next time step's code: RFC 6238 drift of one step is accepted, and a step
    after the one an earlier code used up is not a replay."""
    return totp.at(time.time() + totp.interval)


async def signed_up(client: httpx.AsyncClient) -> str:
    email = new_email()
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 202
    signed_in = await ui_login(client, email)
    assert signed_in.status_code == 303, signed_in.text
    return email


async def enrol_totp(client: httpx.AsyncClient) -> tuple[pyotp.TOTP, list[str]]:
    """A signed-in browser sets up the app on the security page; the app and the codes."""
    started = await post_form(client, SECURITY, f"{SECURITY}/totp", {})
    assert started.status_code == 200, started.text
    assert "<svg" in started.text  # the QR code, inline
    secret = _SECRET.search(started.text)
    assert secret is not None, started.text
    totp = pyotp.TOTP(secret.group(1))
    action = f"{SECURITY}/totp/confirm"
    confirmed = await client.post(
        action,
        data={
            "csrf_token": token_for(started.text, action),
            "secret": secret.group(1),
            "code": totp.now(),
        },
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = _CODE.findall(confirmed.text)
    assert len(codes) == 10
    return totp, codes


def mfa_cookie(answer: httpx.Response) -> str:
    return next(
        value for value in answer.headers.get_list("set-cookie") if value.startswith("keyturn_mfa=")
    )


async def to_second_step(
    client: httpx.AsyncClient, email: str, next_path: str | None = None
) -> httpx.Response:
    """A fresh browser's password step; answers the redirect to /ui/mfa."""
    client.cookies.clear()
    extra = {"next": next_path} if next_path else {}
    answer = await ui_login(client, email, **extra)
    assert answer.status_code == 303, answer.text
    return answer


async def test_password_step_leaves_only_a_short_mfa_cookie(client: httpx.AsyncClient) -> None:
    email = await signed_up(client)
    await enrol_totp(client)
    answer = await to_second_step(client, email, "/ui/account/security")
    assert answer.headers["location"] == "/ui/mfa?next=%2Fui%2Faccount%2Fsecurity"
    cookie = mfa_cookie(answer).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/ui;" in cookie or cookie.endswith("path=/ui")
    max_age = re.search(r"max-age=(\d+)", cookie)
    assert max_age is not None
    assert 0 < int(max_age.group(1)) <= 300
    # No session was opened by the password alone.
    assert not [c for c in answer.headers.get_list("set-cookie") if "keyturn_session=" in c]


async def test_the_mfa_cookie_is_not_a_session(client: httpx.AsyncClient) -> None:
    email = await signed_up(client)
    await enrol_totp(client)
    await to_second_step(client, email)
    assert client.cookies.get("keyturn_mfa")
    assert client.cookies.get("keyturn_session") is None
    home = await client.get("/ui/")
    assert home.status_code == 303
    assert home.headers["location"] == "/ui/login"
    security = await client.get(SECURITY)
    assert security.status_code == 303
    assert security.headers["location"] == "/ui/login?next=%2Fui%2Faccount%2Fsecurity"
    me = await client.get(
        "/v1/me", headers={"Authorization": f"Bearer {client.cookies['keyturn_mfa']}"}
    )
    assert me.status_code == 401


async def test_wrong_code_then_right_code_signs_in_and_continues_to_next(
    client: httpx.AsyncClient,
) -> None:
    email = await signed_up(client)
    totp, _codes = await enrol_totp(client)
    await to_second_step(client, email, "/ui/account/security")
    page = await client.get("/ui/mfa", params={"next": SECURITY})
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PASSKEY_CSP
    assert 'name="method" value="totp"' in page.text
    assert 'name="method" value="recovery_code"' in page.text
    wrong = str((int(totp.now()) + 1) % 1_000_000).zfill(6)
    refused = await post_form(
        client,
        f"/ui/mfa?next={SECURITY}",
        "/ui/mfa",
        {"method": "totp", "code": wrong, "next": SECURITY},
    )
    assert refused.status_code == 401
    assert "That code is not correct" in refused.text
    assert client.cookies.get("keyturn_session") is None
    empty = await post_form(client, "/ui/mfa", "/ui/mfa", {"method": "totp", "code": " "})
    assert empty.status_code == 422
    done = await post_form(
        client, "/ui/mfa", "/ui/mfa", {"method": "totp", "code": later_code(totp), "next": SECURITY}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == SECURITY
    assert client.cookies.get("keyturn_session")
    assert client.cookies.get("keyturn_mfa") is None  # cleared with the sign-in
    security = await client.get(SECURITY)
    assert security.status_code == 200
    assert "<dt>Second step</dt><dd>On</dd>" in security.text


async def test_a_recovery_code_finishes_the_step_once(client: httpx.AsyncClient) -> None:
    email = await signed_up(client)
    _totp, codes = await enrol_totp(client)
    await to_second_step(client, email)
    done = await post_form(
        client, "/ui/mfa", "/ui/mfa", {"method": "recovery_code", "code": codes[0]}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ui/"
    await to_second_step(client, email)
    again = await post_form(
        client, "/ui/mfa", "/ui/mfa", {"method": "recovery_code", "code": codes[0]}
    )
    assert again.status_code == 401
    assert "That code is not correct" in again.text


async def test_a_dead_mfa_cookie_goes_back_to_the_sign_in_page(
    client: httpx.AsyncClient,
) -> None:
    client.cookies.set("keyturn_mfa", "A" * 43, domain="testserver.local", path="/ui")
    page = await client.get("/ui/mfa", params={"next": SECURITY})
    assert page.status_code == 303
    location = urlsplit(page.headers["location"])
    assert location.path == "/ui/login"
    assert parse_qs(location.query) == {"status": ["mfa_expired"], "next": [SECURITY]}
    login = await client.get(page.headers["location"])
    assert "That sign-in took too long or had too many tries. Sign in again." in login.text
    client.cookies.clear()
    without_cookie = await client.get("/ui/mfa")
    assert without_cookie.status_code == 303
    assert without_cookie.headers["location"] == "/ui/login?status=mfa_expired"
    # The passkey button's options: JSON naming the way back, for the script.
    token = token_for((await client.get("/ui/login")).text, "/ui/login/passkey")
    login_token = await client.post("/ui/mfa/webauthn/options", data={"csrf_token": token})
    assert login_token.status_code == 403  # a token of another form


async def test_a_post_with_a_dead_token_goes_back_to_the_sign_in_page(
    client: httpx.AsyncClient,
) -> None:
    email = await signed_up(client)
    totp, _codes = await enrol_totp(client)
    await to_second_step(client, email)
    page = await client.get("/ui/mfa")
    token = token_for(page.text, "/ui/mfa")
    # The token dies (here: replaced by one that never existed) before the form is sent.
    client.cookies.set("keyturn_mfa", "A" * 43, domain="testserver.local", path="/ui")
    answer = await client.post(
        "/ui/mfa", data={"csrf_token": token, "method": "totp", "code": later_code(totp)}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?status=mfa_expired"
    assert client.cookies.get("keyturn_session") is None
    assert client.cookies.get("keyturn_mfa") is None  # cleared on the way back
    options = await client.post("/ui/mfa/webauthn/options", data={"csrf_token": token})
    assert options.status_code == 401
    assert options.json()["code"] == "mfa_token_invalid"
    assert options.json()["location"] == "/ui/login?status=mfa_expired"


async def test_forms_need_their_csrf_token(client: httpx.AsyncClient) -> None:
    email = await signed_up(client)
    totp, _codes = await enrol_totp(client)
    await to_second_step(client, email)
    login_page = await client.get("/ui/login")
    login_token = token_for(login_page.text, "/ui/login")
    for token in ("", login_token):
        refused = await client.post(
            "/ui/mfa", data={"csrf_token": token, "method": "totp", "code": later_code(totp)}
        )
        assert refused.status_code == 403
        assert "This form has expired" in refused.text
    assert client.cookies.get("keyturn_session") is None
    # The step still works with the page's own token (the refused posts spent nothing).
    done = await post_form(
        client, "/ui/mfa", "/ui/mfa", {"method": "totp", "code": later_code(totp)}
    )
    assert done.status_code == 303, done.text


async def test_security_page_needs_a_session_and_shows_the_factors(
    client: httpx.AsyncClient,
) -> None:
    signed_out = await client.get(SECURITY)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/ui/login?next=%2Fui%2Faccount%2Fsecurity"
    await signed_up(client)
    home = await client.get("/ui/")
    assert f'href="{SECURITY}"' in home.text
    assert "<script" not in home.text  # pages without passkeys stay script-free
    page = await client.get(SECURITY)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PASSKEY_CSP
    assert page.headers["cache-control"] == "no-store"
    assert "<dt>Second step</dt><dd>Off</dd>" in page.text
    assert 'data-webauthn="create"' in page.text
    await enrol_totp(client)
    page = await client.get(SECURITY)
    assert "<dt>Second step</dt><dd>On</dd>" in page.text
    assert "<dt>Recovery codes left</dt><dd>10</dd>" in page.text
    regenerated = await post_form(client, SECURITY, f"{SECURITY}/recovery-codes", {})
    assert regenerated.status_code == 200
    assert len(_CODE.findall(regenerated.text)) == 10
    removed = await post_form(client, SECURITY, f"{SECURITY}/totp/remove", {})
    assert removed.status_code == 303
    assert removed.headers["location"] == f"{SECURITY}?status=totp_off"
    page = await client.get(removed.headers["location"])
    assert "The authenticator app was removed." in page.text
    assert "<dt>Second step</dt><dd>Off</dd>" in page.text


async def test_a_wrong_enrolment_code_keeps_the_key_on_the_page(
    client: httpx.AsyncClient,
) -> None:
    await signed_up(client)
    started = await post_form(client, SECURITY, f"{SECURITY}/totp", {})
    secret = _SECRET.search(started.text)
    assert secret is not None
    totp = pyotp.TOTP(secret.group(1))
    action = f"{SECURITY}/totp/confirm"
    wrong = await client.post(
        action,
        data={
            "csrf_token": token_for(started.text, action),
            "secret": secret.group(1),
            "code": str((int(totp.now()) + 1) % 1_000_000).zfill(6),
        },
    )
    assert wrong.status_code == 401
    assert "That code is not correct" in wrong.text
    assert secret.group(1) in wrong.text
    # A forged "secret" is never echoed (only base32 is shown again).
    forged = await client.post(
        action,
        data={"csrf_token": token_for(started.text, action), "secret": "<b>x</b>", "code": "1"},
    )
    assert "<b>x</b>" not in forged.text


async def test_passkey_sign_in_refuses_a_bad_credential_on_the_form(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui/login")
    assert 'data-webauthn="get"' in page.text
    action = "/ui/login/passkey"
    token = token_for(page.text, action)
    for credential in ("", "not json", "[1, 2]", '{"id": "AAAA", "rawId": "AAAA"}'):
        answer = await client.post(action, data={"csrf_token": token, "credential": credential})
        assert answer.status_code in (400, 401), (credential, answer.status_code)
        assert "The passkey was not accepted." in answer.text
        assert answer.headers["content-type"].startswith("text/html")
    assert client.cookies.get("keyturn_session") is None
    options = await client.post("/ui/login/passkey/options", data={"csrf_token": token})
    assert options.status_code == 200
    assert options.headers["cache-control"] == "no-store"
    body = options.json()
    assert body["challenge"]
    assert body.get("allowCredentials", []) == []
    refused = await client.post("/ui/login/passkey/options", data={"csrf_token": "x"})
    assert refused.status_code == 403


async def test_the_script_is_served_once_fingerprinted(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui/login")
    found = _SCRIPT.search(page.text)
    assert found is not None
    script = await client.get(found.group(1))
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "navigator.credentials" in script.text
    other = await client.get("/ui/static/webauthn.0000000000000000.js")
    assert other.status_code == 404


async def test_passkey_pages_say_to_use_localhost_on_an_ip_address(
    client: httpx.AsyncClient,
) -> None:
    on_ip = await client.get("/ui/login", headers={"host": "127.0.0.1:8000"})
    assert "Passkeys do not work on an IP address" in on_ip.text
    assert "http://localhost:8000" in on_ip.text
    on_name = await client.get("/ui/login", headers={"host": "localhost:8000"})
    assert "Passkeys do not work" not in on_name.text


async def test_a_role_that_demands_a_factor_enrols_on_the_second_step(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(mfa_required_roles=["admin"])) as peers:
        client = peers()
        email = new_email()
        await peers.app.state.services.users.create_admin(email, PASSWORD)
        answer = await ui_login(client, email, next="/ui/account/security")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/mfa?")
        page = await client.get(answer.headers["location"])
        assert page.status_code == 200
        assert "Set up your second step" in page.text
        assert "<svg" in page.text
        secret = _SECRET.search(page.text)
        assert secret is not None
        totp = pyotp.TOTP(secret.group(1))
        fields = {"method": "totp", "secret": secret.group(1), "next": SECURITY}
        token = token_for(page.text, "/ui/mfa")
        wrong = str((int(totp.now()) + 1) % 1_000_000).zfill(6)
        refused = await client.post("/ui/mfa", data={"csrf_token": token, **fields, "code": wrong})
        assert refused.status_code == 401
        assert "That code is not correct" in refused.text
        assert secret.group(1) in refused.text  # the key stays on the page for a retry
        done = await client.post(
            "/ui/mfa", data={"csrf_token": token, **fields, "code": totp.now()}
        )
        # The first factor: the recovery codes, once, with the session already open.
        assert done.status_code == 200, done.text
        assert len(_CODE.findall(done.text)) == 10
        assert f'<a href="{SECURITY}">Continue</a>' in done.text
        assert client.cookies.get("keyturn_session")
        assert client.cookies.get("keyturn_mfa") is None
        security = await client.get(SECURITY)
        assert security.status_code == 200
        assert "<dt>Second step</dt><dd>On</dd>" in security.text


async def test_an_old_sign_in_is_sent_to_sign_in_again_and_back(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        email = await signed_up(client)
        page = await client.get(SECURITY)
        traveller.shift(timedelta(seconds=settings.reauthentication_max_age + 1))
        action = f"{SECURITY}/totp"
        stale = await client.post(action, data={"csrf_token": token_for(page.text, action)})
        assert stale.status_code == 303
        location = urlsplit(stale.headers["location"])
        assert location.path == "/ui/login"
        assert parse_qs(location.query) == {"status": ["reauthenticate"], "next": [SECURITY]}
        login = await client.get(stale.headers["location"])
        assert "sign in again to change how you sign in" in login.text
        # The passkey ceremony's options: JSON for the script, naming the same way back.
        options = f"{SECURITY}/passkeys/options"
        refused = await client.post(options, data={"csrf_token": token_for(page.text, action)})
        assert refused.status_code == 403
        assert refused.json() == {
            "code": "reauthentication_required",
            "message": refused.json()["message"],
            "location": stale.headers["location"],
        }
        again = await ui_login(client, email, next=SECURITY)
        assert again.headers["location"] == SECURITY
        started = await post_form(client, SECURITY, action, {})
        assert started.status_code == 200
        assert _SECRET.search(started.text)


async def test_an_oauth_sign_in_continues_through_the_second_step(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    email = await signed_up(client)
    totp, _codes = await enrol_totp(client)
    client.cookies.clear()
    authorize = await client.get("/oauth2/authorize", params=auth_params(oauth_client))
    assert authorize.status_code == 303
    back = query_of(authorize.headers["location"])["next"]
    assert back.startswith("/oauth2/authorize?")
    password = await ui_login(client, email, next=back)
    assert password.status_code == 303
    step = await client.get(password.headers["location"])
    assert step.status_code == 200
    # The step ends in a redirect to the client: form-action names its origin.
    assert "form-action 'self' https://app.example.com;" in step.headers["content-security-policy"]
    done = await client.post(
        "/ui/mfa",
        data={
            "csrf_token": token_for(step.text, "/ui/mfa"),
            "method": "totp",
            "code": later_code(totp),
            "next": back,
        },
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == back
    continued = await client.get(back)
    assert continued.status_code == 303
    assert continued.headers["location"].startswith("/ui/consent?")


async def test_passkeys_through_the_pages(make_settings: Callable[..., Settings]) -> None:
    """Add, rename, passwordless sign-in, second step and removal, with a software
    authenticator standing in for the browser's (W3C WebAuthn Level 3 sections 7.1, 7.2)."""
    async with serving(make_settings(issuer=ISSUER)) as peers:
        client = peers()
        device = authenticator()
        email = await signed_up(client)
        page = await client.get(SECURITY)
        add = f"{SECURITY}/passkeys"
        token = token_for(page.text, add)
        options = await client.post(f"{add}/options", data={"csrf_token": token})
        assert options.status_code == 200, options.text
        assert options.headers["cache-control"] == "no-store"
        credential = json.dumps(device.register(options.json()))
        added = await client.post(
            add, data={"csrf_token": token, "credential": credential, "name": "Laptop"}
        )
        # The first factor: its recovery codes, once.
        assert added.status_code == 200, added.text
        assert len(_CODE.findall(added.text)) == 10
        replayed = await client.post(
            add, data={"csrf_token": token, "credential": credential, "name": "Again"}
        )
        assert replayed.status_code == 400
        assert "The passkey was not accepted." in replayed.text
        page = await client.get(SECURITY)
        found = re.search(rf'action="{SECURITY}/passkeys/([0-9a-f-]{{36}})/rename"', page.text)
        assert found is not None
        rename = f"{SECURITY}/passkeys/{found.group(1)}/rename"
        renamed = await client.post(
            rename, data={"csrf_token": token_for(page.text, rename), "name": "Desk key"}
        )
        assert renamed.headers["location"] == f"{SECURITY}?status=passkey_renamed"
        assert "<strong>Desk key</strong>" in (await client.get(SECURITY)).text

        # Passwordless, usernameless: the sign-in page's passkey form.
        client.cookies.clear()
        login = await client.get("/ui/login")
        token = token_for(login.text, "/ui/login/passkey")
        options = await client.post("/ui/login/passkey/options", data={"csrf_token": token})
        assertion = json.dumps(device.authenticate(options.json()))
        fields = {"csrf_token": token, "credential": assertion, "next": SECURITY}
        signed_in = await client.post("/ui/login/passkey", data=fields)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == SECURITY
        assert client.cookies.get("keyturn_session")
        client.cookies.delete("keyturn_session")
        replay = await client.post("/ui/login/passkey", data=fields)
        assert replay.status_code == 401  # the challenge was used up
        assert "The passkey was not accepted." in replay.text
        assert client.cookies.get("keyturn_session") is None

        # The password, then the passkey as the second step.
        await to_second_step(client, email)
        step = await client.get("/ui/mfa")
        assert 'data-options="/ui/mfa/webauthn/options"' in step.text
        token = token_for(step.text, "/ui/mfa")
        options = await client.post("/ui/mfa/webauthn/options", data={"csrf_token": token})
        assert options.status_code == 200, options.text
        assertion = json.dumps(device.authenticate(options.json()))
        done = await client.post(
            "/ui/mfa", data={"csrf_token": token, "method": "webauthn", "credential": assertion}
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/ui/"

        # Removed (a fresh sign-in): the second step is off again.
        page = await client.get(SECURITY)
        delete = f"{SECURITY}/passkeys/{found.group(1)}/delete"
        removed = await client.post(delete, data={"csrf_token": token_for(page.text, delete)})
        assert removed.headers["location"] == f"{SECURITY}?status=passkey_removed"
        page = await client.get(removed.headers["location"])
        assert "The passkey was removed." in page.text
        assert "<dt>Second step</dt><dd>Off</dd>" in page.text
        unknown = await client.post(
            delete, data={"csrf_token": token_for(page.text, SECURITY + "/totp")}
        )
        assert unknown.status_code == 404
