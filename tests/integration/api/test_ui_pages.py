"""Hosted pages under /ui/: rendering, the browser session cookie, CSRF, flows by mail.

Every test speaks HTTP to the real app (httpx + ASGITransport); mails go through the
outbox to the real SMTP test server and the tests follow the links they carry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from helpers import (
    PASSWORD,
    bearer,
    csrf_from,
    lifespan,
    mails_to,
    new_email,
    running_app,
    signup_login,
    submit,
    ui_login,
)
from keyturn.app import create_app
from keyturn.config import Settings
from smtp_server import SmtpServer, text_body

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase 7"
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The pages offering passkeys load the one same-origin script (issue 15); no other page.
PASSKEY_CSP = PAGE_CSP.replace("style-src", "script-src 'self'; connect-src 'self'; style-src")
SCRIPT_TAG = re.compile(r'<script src="/ui/static/webauthn\.[0-9a-f]{16}\.js" defer></script>')
PASSKEY_PAGES = {"/ui/login"}
PAGES = [
    "/ui/login",
    "/ui/signup",
    "/ui/forgot",
    "/ui/reset?token=abc",
    "/ui/verify?token=abc",
    "/ui/logout",
]
_LINK = re.compile(r"https?://[^/\s]+(/ui/\S+)")
_INPUT = re.compile(r"<input ([^>]*)>")
_ATTR = re.compile(r'(\w[\w-]*)="([^"]*)"')


def link_in(mail: Any) -> str:
    """The /ui/ path (with query) of the link in a mail's text part."""
    found = _LINK.search(text_body(mail))
    assert found is not None, text_body(mail)
    return found.group(1)


def visible_inputs(html: str) -> list[dict[str, str]]:
    inputs = [dict(_ATTR.findall(match)) for match in _INPUT.findall(html)]
    return [attrs for attrs in inputs if attrs.get("type") != "hidden"]


def without_tokens(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


def session_cookie(answer: httpx.Response) -> str:
    return next(
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith(("keyturn_session=", "__Host-keyturn="))
    )


async def api_user(client: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh account (signed up and logged in over the API)."""
    return await signup_login(client)


# ---------------------------------------------------------------------------------------
# Rendering, accessibility hooks, brand, headers


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_renders_with_labels_and_page_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    passkeys = path in PASSKEY_PAGES
    assert answer.headers["content-security-policy"] == (PASSKEY_CSP if passkeys else PAGE_CSP)
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    # A no-referrer policy would make browsers send "Origin: null" on our own posts.
    assert answer.headers["referrer-policy"] == "same-origin"
    html = SCRIPT_TAG.sub("", answer.text, count=1) if passkeys else answer.text
    assert '<html lang="en">' in html
    assert "<script" not in html
    assert "style=" not in html  # no inline style: the CSP allows none
    for attrs in visible_inputs(html):
        assert f'<label for="{attrs["id"]}">' in html, attrs
    assert "Keyturn" in html


async def test_api_answers_keep_the_strict_policy(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert answer.headers["referrer-policy"] == "no-referrer"


async def test_errors_are_tied_to_fields_and_summarised(client: httpx.AsyncClient) -> None:
    answer = await submit(client, "/ui/login", {"email": "not an address", "password": ""})
    assert answer.status_code == 422
    html = answer.text
    assert 'role="alert"' in html
    assert 'aria-describedby="email-error"' in html
    assert 'aria-invalid="true"' in html
    assert '<a href="#email">' in html
    assert 'value="not an address"' in html  # the address is kept, escaped


async def test_brand_settings_apply(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        brand_name="Acme <Cloud>",
        brand_color="#ffcc00",
        brand_logo_url="https://cdn.example.com/logo.png",
    )
    async with running_app(settings) as client:
        page = await client.get("/ui/login")
        html = page.text
        assert "<title>Sign in · Acme &lt;Cloud&gt;</title>" in html
        assert '<img src="https://cdn.example.com/logo.png" alt="Acme &lt;Cloud&gt;">' in html
        assert "img-src 'self' https://cdn.example.com;" in page.headers["content-security-policy"]
        stylesheet = re.search(r'<link rel="stylesheet" href="(/ui/static/[^"]+)">', html)
        assert stylesheet is not None
        css = await client.get(stylesheet.group(1))
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "--brand: #ffcc00;" in css.text
        # A light brand colour gets black button labels and dark links (contrast).
        assert "--on-brand: #000000;" in css.text
        assert "--link: #1b1f24;" in css.text


async def test_default_stylesheet_uses_the_default_colour(client: httpx.AsyncClient) -> None:
    html = (await client.get("/ui/login")).text
    path = re.search(r'href="(/ui/static/keyturn\.[0-9a-f]{16}\.css)"', html)
    assert path is not None
    css = (await client.get(path.group(1))).text
    assert "--brand: #1f6feb;" in css
    assert "--on-brand: #ffffff;" in css
    assert (await client.get("/ui/static/keyturn.0000000000000000.css")).status_code == 404


async def test_pages_are_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


# ---------------------------------------------------------------------------------------
# Login and the browser session cookie


async def test_login_sets_the_session_cookie_and_redirects_303(
    client: httpx.AsyncClient,
) -> None:
    user = await api_user(client)
    answer = await ui_login(client, user["email"])
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/"
    cookie = session_cookie(answer)
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # http issuer (make run on loopback)
    assert any(flag.startswith("max-age=") for flag in flags)
    home = await client.get("/ui/")
    assert home.status_code == 200
    assert user["email"] in home.text
    # The same sessions table: the API lists the browser session next to its own.
    sessions = await client.get("/v1/me/sessions", headers=bearer(user["access_token"]))
    assert len(sessions.json()["items"]) == 2


async def test_browser_session_carries_what_authorize_needs(
    client: httpx.AsyncClient, app: Any
) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    pages = app.state.hosted_pages
    cookie = client.cookies.get(pages.kit.cookies.session)
    current = await app.state.services.browser.current(cookie)
    assert current is not None
    assert current.amr == ("pwd",)
    assert current.auth_time is not None
    assert str(current.user.id) == user["user"]["id"]
    assert current.principal().session_id == current.session_id


async def test_https_issuer_gets_a_host_prefixed_secure_cookie(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(issuer="https://id.example.com")
    async with running_app(settings) as plain:
        user = await api_user(plain)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://id.example.com"
        ) as client:
            answer = await ui_login(client, user["email"])
            assert answer.status_code == 303
            cookie = session_cookie(answer)
            assert cookie.startswith("__Host-keyturn=")
            flags = [part.strip().lower() for part in cookie.split(";")]
            assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(flags)
            assert not any(flag.startswith("domain=") for flag in flags)
            assert "__Host-keyturn-csrf=" in answer.request.headers["cookie"]
            assert (await client.get("/ui/")).status_code == 200


async def test_forged_or_foreign_cookies_are_no_session(client: httpx.AsyncClient) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    real = client.cookies.get("keyturn_session")
    assert real is not None
    session_hex, mac = real.split(".")
    forged = [
        f"{uuid.uuid4().hex}.{mac}",  # another session id, same MAC
        f"{session_hex}.{'A' * 43}",  # right id, wrong MAC
        session_hex,
        "",
        real + "x",
    ]
    for value in forged:
        client.cookies.set("keyturn_session", value)
        answer = await client.get("/ui/")
        assert answer.status_code == 303, value
        assert answer.headers["location"] == "/ui/login"


async def test_wrong_password_and_locked_account_answer_identically(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(limit_failures_per_account=3, limit_failures_per_account_ip=50)
    async with running_app(settings) as client:
        user = await api_user(client)
        wrong = await ui_login(client, user["email"], "wrong password 123")
        assert wrong.status_code == 401
        assert "The email address or password is not correct." in wrong.text
        assert "keyturn_session" not in wrong.headers.get("set-cookie", "")
        for _ in range(3):
            await ui_login(client, user["email"], "wrong password 123")
        # Now locked (silently): the right password answers exactly like a wrong one.
        locked = await ui_login(client, user["email"], PASSWORD)
        assert locked.status_code == wrong.status_code
        assert without_tokens(locked.text) == without_tokens(wrong.text)
        assert client.cookies.get("keyturn_session") is None
        api = await client.post(
            "/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert api.json()["code"] == "invalid_credentials"


async def test_throttled_login_shows_a_friendly_429_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(limit_failures_per_account_ip=2)
    async with running_app(settings) as client:
        user = await api_user(client)
        for _ in range(2):
            assert (await ui_login(client, user["email"], "wrong password 123")).status_code == 401
        throttled = await ui_login(client, user["email"], PASSWORD)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        assert throttled.headers["content-type"].startswith("text/html")
        assert "Too many attempts" in throttled.text
        assert "keyturn_session" not in throttled.headers.get("set-cookie", "")


async def test_unverified_login_refused_when_required(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_app(make_settings(require_verified_email=True)) as client:
        email = new_email()
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        answer = await ui_login(client, email)
        assert answer.status_code == 403
        assert "Verify your email address first" in answer.text


# ---------------------------------------------------------------------------------------
# next (return-to): same-origin relative paths only

OPEN_REDIRECT_MUTANTS = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "evil.example",
    " /ui/",
    "/ui/\x00",
    "/ui/\x7f",
    "/\u3000/evil.example",
    "/ü",
    "/" + "a" * 2048,
    "",
]
SAFE_NEXT = ["/ui/", "/oauth2/authorize?client_id=x&state=a%2Fb", "/%0a"]


@pytest.mark.parametrize("target", OPEN_REDIRECT_MUTANTS)
async def test_open_redirect_next_is_ignored(client: httpx.AsyncClient, target: str) -> None:
    user = await api_user(client)
    answer = await ui_login(client, user["email"], next=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/"


@pytest.mark.parametrize("target", SAFE_NEXT)
async def test_same_origin_next_is_followed(client: httpx.AsyncClient, target: str) -> None:
    user = await api_user(client)
    shown = await client.get("/ui/login", params={"next": target})
    assert f'name="next" value="{target.replace("&", "&amp;")}"' in shown.text
    answer = await client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_from(shown.text),
            "email": user["email"],
            "password": PASSWORD,
            "next": target,
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == target


async def test_login_page_drops_an_unsafe_next(client: httpx.AsyncClient) -> None:
    shown = await client.get("/ui/login", params={"next": "//evil.example/"})
    assert "evil.example" not in shown.text


# ---------------------------------------------------------------------------------------
# CSRF


async def test_missing_or_wrong_csrf_token_is_403_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    fields = {"email": email, "password": PASSWORD}
    no_cookie = await client.post("/ui/signup", data={**fields, "csrf_token": "A" * 43})
    assert no_cookie.status_code == 403
    assert "This form has expired" in no_cookie.text
    shown = await client.get("/ui/signup")
    missing = await client.post("/ui/signup", data=fields)
    assert missing.status_code == 403
    # A token from another form (login) does not work on signup.
    login_token = csrf_from((await client.get("/ui/login")).text)
    other = await client.post("/ui/signup", data={**fields, "csrf_token": login_token})
    assert other.status_code == 403
    # The first character changes the first decoded byte (the last one carries two unused
    # bits of base64url: "...AB" and "...AA" can decode alike, so no tampering there).
    token = csrf_from(shown.text)
    tampered = ("B" if token[0] != "B" else "C") + token[1:]
    wrong = await client.post("/ui/signup", data={**fields, "csrf_token": tampered})
    assert wrong.status_code == 403
    # Nothing was created: the address is still free.
    login = await client.post("/v1/auth/login", json=fields)
    assert login.status_code == 401
    ok = await submit(client, "/ui/signup", fields)
    assert ok.status_code == 303
    assert (await client.post("/v1/auth/login", json=fields)).status_code == 200


async def test_csrf_cookie_of_another_browser_does_not_match(client: httpx.AsyncClient) -> None:
    user = await api_user(client)
    token = csrf_from((await client.get("/ui/login")).text)
    client.cookies.set("keyturn_csrf", "B" * 43)
    answer = await client.post(
        "/ui/login", data={"csrf_token": token, "email": user["email"], "password": PASSWORD}
    )
    assert answer.status_code == 403
    assert client.cookies.get("keyturn_session") is None


async def test_cross_origin_post_is_refused(client: httpx.AsyncClient) -> None:
    user = await api_user(client)
    fields = {"email": user["email"], "password": PASSWORD}
    for origin in ("https://evil.example", "null"):
        answer = await submit(client, "/ui/login", fields, headers={"origin": origin})
        assert answer.status_code == 403, origin
    same = await submit(client, "/ui/login", fields, headers={"origin": "http://testserver"})
    assert same.status_code == 303


async def test_a_body_that_is_not_a_form_is_400(client: httpx.AsyncClient) -> None:
    await client.get("/ui/login")
    for content, media_type in [
        (b'{"email": "a@b.c"}', "application/json"),
        (b"email=a&email=b", "application/x-www-form-urlencoded"),
        (b"email=%ff", "application/x-www-form-urlencoded"),
    ]:
        answer = await client.post(
            "/ui/login", content=content, headers={"content-type": media_type}
        )
        assert answer.status_code == 400, content


# ---------------------------------------------------------------------------------------
# Logout and revocation end the cookie session


async def test_logout_confirms_then_ends_the_session(client: httpx.AsyncClient, app: Any) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    cookie = client.cookies.get("keyturn_session")
    assert cookie is not None
    current = await app.state.services.browser.current(cookie)
    assert current is not None
    confirm = await client.get("/ui/logout")
    assert confirm.status_code == 200
    assert user["email"] in confirm.text
    assert 'action="/ui/logout"' in confirm.text
    # GET alone signs nobody out.
    assert (await client.get("/ui/")).status_code == 200
    ended = await client.post("/ui/logout", data={"csrf_token": csrf_from(confirm.text)})
    assert ended.status_code == 303
    assert ended.headers["location"] == "/ui/login?status=signed_out"
    assert 'keyturn_session=""' in ended.headers["set-cookie"]
    assert "You are signed out." in (await client.get(ended.headers["location"])).text
    # The old cookie value is dead, and the sid is on the shared deny-list, so an access
    # token carrying it would be refused as well.
    client.cookies.set("keyturn_session", cookie)
    assert (await client.get("/ui/")).status_code == 303
    assert await app.state.services.access_tokens.is_revoked(current.session_id)
    # The API session of the same user is untouched.
    assert (await client.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 200


async def test_revoking_the_session_through_the_api_ends_the_cookie_session(
    client: httpx.AsyncClient,
) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    assert (await client.get("/ui/")).status_code == 200
    headers = bearer(user["access_token"])
    items = (await client.get("/v1/me/sessions", headers=headers)).json()["items"]
    browser = next(item for item in items if not item["current"])
    ended = await client.delete(f"/v1/me/sessions/{browser['id']}", headers=headers)
    assert ended.status_code == 204
    answer = await client.get("/ui/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login"


async def test_a_new_login_replaces_the_browsers_previous_session(
    client: httpx.AsyncClient,
) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    first = client.cookies.get("keyturn_session")
    await ui_login(client, user["email"])
    assert client.cookies.get("keyturn_session") != first
    headers = bearer(user["access_token"])
    items = (await client.get("/v1/me/sessions", headers=headers)).json()["items"]
    assert len(items) == 2  # the API session and the newest browser session


# ---------------------------------------------------------------------------------------
# Signup: enumeration-safe


async def test_signup_answers_the_same_for_known_and_unknown_addresses(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    known = (await api_user(client))["email"]
    unknown = new_email()
    answers = []
    for email in (known, unknown):
        answer = await submit(client, "/ui/signup", {"email": email, "password": PASSWORD})
        answers.append(answer)
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    pages = [await client.get(answer.headers["location"]) for answer in answers]
    assert without_tokens(pages[0].text) == without_tokens(pages[1].text)
    assert "Check your mail" in pages[0].text
    # Each owner hears about it by mail: the known one "account exists", the new one verify.
    mails = await mails_to(smtp, known, count=2)  # its own verification, then "exists"
    assert any("/ui/login" in text_body(mail) for mail in mails)
    (verify,) = await mails_to(smtp, unknown)
    assert link_in(verify).startswith("/ui/verify?token=")


async def test_signup_policy_errors_show_on_the_form(client: httpx.AsyncClient) -> None:
    answer = await submit(client, "/ui/signup", {"email": new_email(), "password": "short"})
    assert answer.status_code == 422
    assert 'id="password-error"' in answer.text
    assert 'aria-describedby="password-hint password-error"' in answer.text


# ---------------------------------------------------------------------------------------
# Flows by mail: verify, reset, email change


async def test_verify_by_link_needs_the_button(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    email = new_email()
    signed = await submit(client, "/ui/signup", {"email": email, "password": PASSWORD})
    assert signed.status_code == 303
    (mail,) = await mails_to(smtp, email)
    link = link_in(mail)
    page = await client.get(link)
    assert page.status_code == 200
    assert "Verify my address" in page.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    # A GET (a mail scanner) did not use the token up.
    assert (await client.get("/v1/me", headers=headers)).json()["email_verified"] is False
    token = unquote(link.split("token=", 1)[1])
    done = await client.post(
        "/ui/verify", data={"csrf_token": csrf_from(page.text), "token": token}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/verify?status=done"
    assert "Address verified" in (await client.get(done.headers["location"])).text
    assert (await client.get("/v1/me", headers=headers)).json()["email_verified"] is True
    again = await client.post(
        "/ui/verify", data={"csrf_token": csrf_from(page.text), "token": token}
    )
    assert again.status_code == 400
    assert "This link was already used." in again.text


async def test_reset_by_link_ends_the_cookie_session(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await api_user(client)
    email = user["email"]
    await ui_login(client, email)
    assert (await client.get("/ui/")).status_code == 200
    asked = await submit(client, "/ui/forgot", {"email": email})
    assert asked.status_code == 303
    assert asked.headers["location"] == "/ui/forgot?status=sent"
    unknown = await submit(client, "/ui/forgot", {"email": new_email()})
    assert unknown.headers["location"] == asked.headers["location"]
    mails = await mails_to(smtp, email, count=2)  # verification (signup), then reset
    link = link_in(next(m for m in mails if "/ui/reset" in text_body(m)))
    form = await client.get(link)
    assert form.status_code == 200
    token = unquote(link.split("token=", 1)[1])
    csrf = csrf_from(form.text)

    async def post(password: str, confirm: str) -> httpx.Response:
        fields = {"csrf_token": csrf, "token": token, "password": password}
        return await client.post("/ui/reset", data={**fields, "password_confirm": confirm})

    weak = await post("short", "short")
    assert weak.status_code == 422
    assert 'id="password-error"' in weak.text
    mismatch = await post(NEW_PASSWORD, NEW_PASSWORD + "x")
    assert mismatch.status_code == 422
    assert "The two passwords are not the same." in mismatch.text
    done = await post(NEW_PASSWORD, NEW_PASSWORD)
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/login?status=password_reset"
    # Every session ended with the reset, the browser's included.
    home = await client.get("/ui/")
    assert home.status_code == 303
    assert (await ui_login(client, email, PASSWORD)).status_code == 401
    assert (await ui_login(client, email, NEW_PASSWORD)).status_code == 303
    used = await post(NEW_PASSWORD + "!", NEW_PASSWORD + "!")
    assert used.status_code == 400
    assert "Ask for a new link" in used.text


async def test_reset_without_a_token_is_a_clear_400(client: httpx.AsyncClient) -> None:
    answer = await client.get("/ui/reset")
    assert answer.status_code == 400
    assert "The link is incomplete" in answer.text


async def test_email_change_confirmation_asks_to_sign_in_first(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await api_user(client)
    new = new_email()
    asked = await client.post(
        "/v1/me/email",
        json={"password": PASSWORD, "new_email": new},
        headers=bearer(user["access_token"]),
    )
    assert asked.status_code == 202
    (mail,) = await mails_to(smtp, new)
    link = link_in(mail)
    assert link.startswith("/ui/email/confirm?token=")
    redirected = await client.get(link)
    assert redirected.status_code == 303
    login_page = redirected.headers["location"]
    assert login_page.startswith("/ui/login?next=")
    shown = await client.get(login_page)
    back = unquote(login_page.split("next=", 1)[1])
    signed_in = await client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_from(shown.text),
            "email": user["email"],
            "password": PASSWORD,
            "next": back,
        },
    )
    assert signed_in.headers["location"] == back
    page = await client.get(back)
    assert page.status_code == 200
    token = unquote(back.split("token=", 1)[1])
    done = await client.post(
        "/ui/email/confirm", data={"csrf_token": csrf_from(page.text), "token": token}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/email/confirm?status=done"
    me = await client.get("/v1/me", headers=bearer(user["access_token"]))
    assert me.json()["email"] == new


async def test_incomplete_links_and_forms_get_clear_pages(client: httpx.AsyncClient) -> None:
    for path in ("/ui/verify", "/ui/email/confirm", "/ui/reset"):
        answer = await client.get(path)
        assert answer.status_code == 400, path
        assert "The link is incomplete" in answer.text
    for path, page in (("/ui/verify", "/ui/verify?token=x"), ("/ui/reset", "/ui/reset?token=x")):
        answer = await submit(client, page, {"token": ""}, action=path)
        assert answer.status_code == 400, path
        assert "The link is incomplete" in answer.text
    bad = await submit(client, "/ui/forgot", {"email": "nope"})
    assert bad.status_code == 422
    assert 'aria-describedby="email-error"' in bad.text
    done = await client.get("/ui/email/confirm?status=done")
    assert "Address changed" in done.text
    # Signed out, the confirmation form sends the browser to sign in first.
    page = await client.get("/ui/login")
    posted = await client.post(
        "/ui/email/confirm",
        data={"csrf_token": csrf_from(page.text), "token": "A" * 43},
    )
    assert posted.status_code == 403  # the login form's token is not this form's


async def test_email_confirm_with_a_bad_token_offers_a_new_link(client: httpx.AsyncClient) -> None:
    user = await api_user(client)
    await ui_login(client, user["email"])
    page = await client.get("/ui/email/confirm?token=" + "A" * 43)
    assert page.status_code == 200
    answer = await client.post(
        "/ui/email/confirm", data={"csrf_token": csrf_from(page.text), "token": "A" * 43}
    )
    assert answer.status_code == 400
    assert "This link is no longer valid." in answer.text
    # Signed out again, the same post asks to sign in first.
    client.cookies.delete("keyturn_session")
    again = await client.post(
        "/ui/email/confirm", data={"csrf_token": csrf_from(page.text), "token": "A" * 43}
    )
    assert again.status_code == 303
    assert again.headers["location"].startswith("/ui/login?next=%2Fui%2Femail%2Fconfirm")


async def test_mail_limit_shows_the_friendly_429(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings(limit_mails_per_address_per_hour=1)) as client:
        email = new_email()
        first = await submit(client, "/ui/forgot", {"email": email})
        assert first.status_code == 303
        second = await submit(client, "/ui/forgot", {"email": email})
        assert second.status_code == 429
        assert "Too many attempts" in second.text
        assert int(second.headers["retry-after"]) > 0
