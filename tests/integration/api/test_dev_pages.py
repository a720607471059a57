"""Issue 13 items 1, 2, 4, 5, 12: docs assets, the dev issuer, the dev mailbox, the landing
page and the client pages on consent / sign-in (httpx against the real app)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, TEST_SECRET, admin_headers, lifespan, new_email, submit, ui_login
from keyturn.app import create_app
from keyturn.config import (
    OWASP_ARGON2_MEMORY_KIB,
    OWASP_ARGON2_TIME_COST,
    ConfigError,
    Settings,
    load_settings,
)
from keyturn.db.migrate import upgrade
from oauth_helpers import auth_params, pkce_pair, query_of, register, signed_in

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "issuer": "https://id.example.com",
    "argon2_memory_kib": OWASP_ARGON2_MEMORY_KIB,
    "argon2_time_cost": OWASP_ARGON2_TIME_COST,
    "require_verified_email": False,
}
pytestmark = pytest.mark.anyio

HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


# -- item 2: the dev issuer is the listener ----------------------------------------------


def dev_settings(tmp_path: Path, **values: Any) -> Settings:
    return load_settings(data_dir=tmp_path, secret_key=[TEST_SECRET], **values)


@pytest.mark.parametrize(
    ("host", "port", "issuer"),
    [
        ("127.0.0.1", 8100, "http://127.0.0.1:8100"),
        ("localhost", 9001, "http://localhost:9001"),
        ("::1", 8100, "http://[::1]:8100"),
        ("0.0.0.0", 8200, "http://127.0.0.1:8200"),  # noqa: S104  (the wildcard under test)
        ("::", 8300, "http://[::1]:8300"),
    ],
)
def test_dev_issuer_follows_host_and_port(
    tmp_path: Path, host: str, port: int, issuer: str
) -> None:
    assert dev_settings(tmp_path, host=host, port=port).issuer == issuer


def test_dev_issuer_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_PORT", "8100")
    monkeypatch.delenv("KEYTURN_ISSUER", raising=False)
    assert dev_settings(tmp_path).issuer == "http://127.0.0.1:8100"
    monkeypatch.setenv("KEYTURN_ISSUER", "https://id.example.com/")
    assert dev_settings(tmp_path).issuer == "https://id.example.com"


def test_dev_issuer_is_https_with_tls(tmp_path: Path) -> None:
    tls = {"tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
    assert dev_settings(tmp_path, port=8443, **tls).issuer == "https://127.0.0.1:8443"


def test_production_still_requires_the_issuer(tmp_path: Path) -> None:
    values = {**PRODUCTION, "smtp_url": "smtp://mail.example.com:25"}
    del values["issuer"]
    with pytest.raises(ConfigError, match="KEYTURN_ISSUER is required"):
        load_settings(data_dir=tmp_path, secret_key=[TEST_SECRET], **values)


async def test_mail_links_and_discovery_carry_the_port(tmp_path: Path) -> None:
    settings = dev_settings(
        tmp_path,
        port=8123,
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        outbox_poll_seconds=0.05,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
    )
    await upgrade(settings.database_url)
    app = create_app(settings)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            discovery = (await http.get("/.well-known/openid-configuration")).json()
            assert discovery["issuer"] == "http://127.0.0.1:8123"
            assert discovery["authorization_endpoint"].startswith("http://127.0.0.1:8123/")
            email = new_email()
            await http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
            mail = await _kept_mail(http, email)
            assert "http://127.0.0.1:8123/ui/verify?token=" in mail


# -- item 4: the dev mailbox -----------------------------------------------------------


async def _kept_mail(http: httpx.AsyncClient, address: str) -> str:
    """The page of the newest kept mail to ``address`` (waits for the outbox worker)."""
    for _ in range(1500):
        listing = await http.get("/ui/dev/mail")
        assert listing.status_code == 200
        found = re.search(
            r'<a href="(/ui/dev/mail/\d+)">[^<]*</a>\s*<span class="hint">to ' + re.escape(address),
            listing.text,
        )
        if found:
            page = await http.get(found.group(1))
            assert page.status_code == 200
            return page.text
        await _pause()
    raise AssertionError(f"no mail to {address} in the dev mailbox")


async def _pause() -> None:
    await anyio.sleep(0.02)


async def test_dev_mailbox_lists_and_renders_mails(client: httpx.AsyncClient) -> None:
    empty = await client.get("/ui/dev/mail")
    assert empty.status_code == 200
    assert empty.headers["cache-control"] == "no-store"
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    page = await _kept_mail(client, email)
    # The text part, its link made clickable (escaped, http(s) only).
    link = re.search(r'<a href="(http://[^"]+/ui/verify\?token=[^"]+)">', page)
    assert link is not None, page
    assert "<h2>HTML</h2>" in page
    frame = re.search(
        r'<iframe[^>]+sandbox="allow-popups allow-popups-to-escape-sandbox"'
        r'[^>]+src="(/ui/dev/mail/\d+/html)"',
        page,
    )
    assert frame is not None, page
    html = await client.get(frame.group(1))
    assert html.status_code == 200
    csp = html.headers["content-security-policy"]
    # The mail's markup runs in an opaque origin: no script, no form, framed only by us.
    assert csp.startswith("sandbox allow-popups allow-popups-to-escape-sandbox;")
    assert "script-src" not in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp
    assert "form-action 'none'" in csp
    assert '<base target="_blank">' in html.text
    assert (await client.get("/ui/dev/mail/999999")).status_code == 404
    assert (await client.get("/ui/dev/mail/999999/html")).status_code == 404
    assert (await client.get("/ui/dev/mail/nope")).status_code == 422


async def test_mailbox_escapes_what_a_mail_carries(app: FastAPI, client: httpx.AsyncClient) -> None:
    # A name is the one value a signup puts into a mail; it must come out as text.
    email = new_email()
    name = '<script>alert(1)</script>"'
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": name})
    page = await _kept_mail(client, email)
    assert "<script>alert(1)" not in page


def test_text_parts_link_only_http_urls() -> None:
    from keyturn.api.ui.dev_mail import text_parts

    parts = text_parts("Open https://a.example/x?t=1. Or javascript:alert(1) <http://b/>")
    assert [url for _, url in parts if url] == ["https://a.example/x?t=1.", "http://b/"]
    assert "".join(chunk for chunk, _ in parts).startswith("Open https://a.example")


async def test_production_has_no_dev_mailbox(make_settings: Any) -> None:
    settings = make_settings(**PRODUCTION)
    application = create_app(settings)
    paths = {getattr(route, "path", "") for route in application.routes}
    assert not any(path.startswith("/ui/dev") for path in paths)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            assert (await http.get("/ui/dev/mail")).status_code == 404
            assert (await http.get("/ui/dev/mail/1")).status_code == 404
            landing = await http.get("/")
            assert "dev_mailbox" not in landing.json()["links"]
            assert "docs" not in landing.json()["links"]


async def test_dev_mailbox_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/ui") or path == "/"]


# -- item 5: the landing page ------------------------------------------------------------


async def test_landing_page_for_browsers_json_for_clients(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    base = settings.issuer
    for href in ("/ui/login", "/ui/signup", "/docs", "/.well-known/openid-configuration"):
        assert f'href="{base}{href}"' in page.text
    assert f'href="{base}/ui/dev/mail"' in page.text
    answer = await client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["name"] == "Keyturn"
    assert body["links"]["sign_in"] == f"{base}/ui/login"
    assert body["links"]["openid_configuration"] == f"{base}/.well-known/openid-configuration"
    assert body["links"]["dev_mailbox"] == f"{base}/ui/dev/mail"
    as_json = await client.get("/", headers={"accept": "application/json"})
    assert as_json.json() == body


# -- item 1: Swagger UI 5 assets ---------------------------------------------------------


async def test_docs_serve_swagger_ui_5_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # the init script is a file (strict CSP)
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    # Swagger UI 5.x reads OpenAPI 3.1 (the 4.15 of swagger-ui-bundle rejected it).
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle.content)
    assert version is not None
    assert int(version.group(1)) >= 5
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")


# -- item 12: client pages on the consent and sign-in pages ------------------------------


def pkce_params(oauth_client: dict[str, Any]) -> dict[str, str]:
    _, challenge = pkce_pair()
    return auth_params(oauth_client, code_challenge=challenge, code_challenge_method="S256")


PAGES = {
    "client_uri": "https://app.example.com/home",
    "policy_uri": "https://app.example.com/privacy",
    "tos_uri": "https://app.example.com/terms",
}


async def test_client_page_uris_are_registered_and_returned(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await register(app, client, **PAGES)
    assert {name: created[name] for name in PAGES} == PAGES
    headers = await admin_headers(app, client)
    path = f"/v1/admin/clients/{created['client_id']}"
    shown = (await client.get(path, headers=headers)).json()
    assert {name: shown[name] for name in PAGES} == PAGES
    patched = await client.patch(
        path, json={"tos_uri": "", "policy_uri": "https://app.example.com/p2"}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tos_uri"] is None
    assert patched.json()["policy_uri"] == "https://app.example.com/p2"
    assert patched.json()["client_uri"] == PAGES["client_uri"]
    plain = await register(app, client)
    assert plain["client_uri"] is None
    assert plain["tos_uri"] is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/",
        "javascript:alert(1)",
        "https://user@app.example.com/",
        "https:///nohost",
        "https://app.example.com/a b",
        "data:text/html,hi",
    ],
)
async def test_client_page_uris_must_be_https(
    app: FastAPI, client: httpx.AsyncClient, uri: str
) -> None:
    headers = await admin_headers(app, client)
    body = {"client_name": "X", "redirect_uris": ["https://app.example.com/cb"], "tos_uri": uri}
    answer = await client.post("/v1/admin/clients", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_client_metadata"
    assert answer.json()["errors"][0]["field"] == "tos_uri"


async def test_consent_shows_client_home_policy_and_terms(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, client_name="Photo Printer", **PAGES)
    await signed_in(client)
    answer = await client.get("/oauth2/authorize", params=pkce_params(oauth_client))
    assert answer.status_code == 303
    page = await client.get(answer.headers["location"])
    assert page.status_code == 200, answer.headers["location"]
    assert "<strong>Photo Printer</strong>" in page.text
    assert ">app.example.com</a>" in page.text
    assert f'href="{PAGES["policy_uri"]}"' in page.text
    assert "privacy policy" in page.text
    assert f'href="{PAGES["tos_uri"]}"' in page.text
    assert "terms of service" in page.text


async def test_consent_without_registered_pages_has_no_links(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, client_name="Bare App")
    await signed_in(client)
    answer = await client.get("/oauth2/authorize", params=pkce_params(oauth_client))
    page = await client.get(answer.headers["location"])
    assert "<strong>Bare App</strong> wants" in page.text
    assert "privacy policy" not in page.text
    assert "terms of service" not in page.text


async def test_sign_in_names_the_application_that_asks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, client_name="Photo Printer")
    answer = await client.get("/oauth2/authorize", params=pkce_params(oauth_client))
    assert answer.status_code == 303
    login = await client.get(answer.headers["location"])
    assert login.status_code == 200, answer.headers["location"]
    assert "<strong>Photo Printer</strong> asks you to sign in" in login.text
    # A wrong password keeps saying who asks.
    next_path = query_of(answer.headers["location"])["next"]
    wrong = await submit(
        client,
        answer.headers["location"],
        {"email": new_email(), "password": "wrong password 123", "next": next_path},
    )
    assert wrong.status_code == 401, wrong.text
    assert "<strong>Photo Printer</strong> asks you to sign in" in wrong.text
    plain = await client.get("/ui/login")
    assert "asks you to sign in" not in plain.text
    # An unknown client in next= names nobody.
    forged = await client.get(
        "/ui/login", params={"next": "/oauth2/authorize?client_id=nope&redirect_uri=x"}
    )
    assert "asks you to sign in" not in forged.text


async def test_sign_in_error_page_still_renders(client: httpx.AsyncClient) -> None:
    email = new_email()
    answer = await ui_login(client, email, "wrong password 123")
    assert answer.status_code in (400, 401)
    assert "There is a problem" in answer.text
