"""HTTP hardening as attacks (issue 4 item 4; DESIGN.md section 5).

The transport sets the socket peer (``httpx.ASGITransport(client=...)``), so the tests play
a direct client, a trusted reverse proxy and a spoofer against one running app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, lifespan, new_email, serving
from keyturn.api.http.hardening import TrustedProxies, cors_origins
from keyturn.api.http.middleware import with_charset
from keyturn.app import create_app
from keyturn.config import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST, ConfigError

pytestmark = pytest.mark.anyio

PROXY = "10.0.0.5"
ATTACKER = "203.0.113.66"
ALLOWED_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.net"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


async def _session_ip(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    """Signs up and logs in with ``headers``; returns the ``ip`` the session recorded."""
    email = new_email()
    body = {"email": email, "password": PASSWORD}
    assert (await http.post("/v1/auth/signup", json=body, headers=headers)).status_code == 202
    login = await http.post("/v1/auth/login", json=body, headers=headers)
    assert login.status_code == 200, login.text
    auth = bearer(login.json()["access_token"])
    sessions = await http.get("/v1/me/sessions", headers={**(headers or {}), **auth})
    assert sessions.status_code == 200, sessions.text
    (item,) = sessions.json()["items"]
    ip: str = item["ip"]
    return ip


# --- Trusted proxies (authentik CVE-2024-47070; v5.0.0-4.1.3) --------------------------------


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored_v5_0_0_4_1_3(
    make_settings: SettingsFactory,
) -> None:
    """A direct client writing X-Forwarded-For changes neither the session nor audit IP."""
    async with serving(make_settings(trusted_proxies=[PROXY])) as connect:
        http = connect(ATTACKER)
        spoof = {"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"}
        assert await _session_ip(http, spoof) == ATTACKER
        # Even an address on the trusted list, written by the client, is only a string.
        assert await _session_ip(http, {"X-Forwarded-For": PROXY}) == ATTACKER
        answer = await http.get("/healthz", headers=spoof)
        assert "strict-transport-security" not in answer.headers


async def test_without_trusted_proxies_forwarded_headers_never_count(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings()) as connect:
        http = connect(PROXY)
        assert await _session_ip(http, {"X-Forwarded-For": "198.51.100.1"}) == PROXY


async def test_trusted_proxy_chain_resolves_the_first_untrusted_hop(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    async with serving(settings) as connect:
        http = connect(PROXY)
        # The client wrote the leftmost entry; the edge (10.1.1.1) appended the real peer.
        chain = {"X-Forwarded-For": "6.6.6.6, 192.0.2.44, 10.1.1.1"}
        assert await _session_ip(http, chain) == "192.0.2.44"
        # Several header lines form one list, in order.
        lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "192.0.2.45, 10.9.9.9")]
        assert await _session_ip(http, {"X-Forwarded-For": "6.6.6.6"}) == "6.6.6.6"
        assert await _session_ip_raw(http, lines) == "192.0.2.45"
        # IPv4-mapped IPv6 is the same client as its IPv4 form.
        assert await _session_ip(http, {"X-Forwarded-For": "::ffff:192.0.2.46"}) == "192.0.2.46"
        # IPv6 proxy peers and clients work the same way.
        v6 = connect("2001:db8::7")
        assert await _session_ip(v6, {"X-Forwarded-For": "2001:db9::1"}) == "2001:db9::1"


async def test_the_remembered_direct_answer_never_stands_for_a_forwarded_one(
    make_settings: SettingsFactory,
) -> None:
    """The edge remembers the address of a peer that sends no X-Forwarded-* (issue 18):
    per peer, and never for a request that carries them."""
    async with serving(make_settings(trusted_proxies=["10.0.0.0/8"])) as connect:
        proxy, direct = connect(PROXY), connect(ATTACKER)
        assert await _session_ip(proxy) == PROXY
        assert await _session_ip(direct) == ATTACKER
        assert await _session_ip(proxy, {"X-Forwarded-For": "192.0.2.20"}) == "192.0.2.20"
        assert await _session_ip(proxy) == PROXY
        assert await _session_ip(direct, {"X-Forwarded-For": "192.0.2.21"}) == ATTACKER
        # The scheme a trusted proxy forwards counts for that request alone.
        https = await proxy.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" in https.headers
        plain = await proxy.get("/healthz")
        assert "strict-transport-security" not in plain.headers


async def _session_ip_raw(http: httpx.AsyncClient, headers: list[tuple[str, str]]) -> str:
    email = new_email()
    body = {"email": email, "password": PASSWORD}
    assert (await http.post("/v1/auth/signup", json=body)).status_code == 202
    login = await http.post("/v1/auth/login", json=body, headers=httpx.Headers(headers))
    assert login.status_code == 200, login.text
    sessions = await http.get("/v1/me/sessions", headers=bearer(login.json()["access_token"]))
    ip: str = sessions.json()["items"][0]["ip"]
    return ip


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        ("not-an-ip", PROXY),
        ("192.0.2.10, garbage", PROXY),
        ("", PROXY),
        ("192.0.2.10, , 10.2.2.2", "10.2.2.2"),
        ("'; DROP TABLE users; --, 10.3.3.3", "10.3.3.3"),
        ("192.0.2.10:443", PROXY),
        ("192.0.2.11, 10.4.4.4", "192.0.2.11"),
    ],
)
async def test_garbage_forwarded_for_never_becomes_the_address(
    make_settings: SettingsFactory, forwarded_for: str, expected: str
) -> None:
    """An unparsable hop stops the walk; the last good hop is used, never the garbage."""
    async with serving(make_settings(trusted_proxies=["10.0.0.0/8"])) as connect:
        http = connect(PROXY)
        assert await _session_ip(http, {"X-Forwarded-For": forwarded_for}) == expected


def test_trusted_proxies_resolve_scheme_and_edge_cases() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "::ffff:172.16.0.0/108", "fd00::1"])
    # X-Forwarded-Proto aligned with the hop the client used; overwritten single value.
    assert proxies.resolve("10.0.0.1", "http", ["192.0.2.1, 10.0.0.2"], ["https, http"]) == (
        "192.0.2.1",
        "https",
    )
    assert proxies.resolve("10.0.0.1", "http", ["192.0.2.1"], ["HTTPS"]) == ("192.0.2.1", "https")
    assert proxies.resolve("10.0.0.1", "http", [], ["https"]) == ("10.0.0.1", "https")
    # Unknown proto values are ignored: fail closed to the socket's scheme.
    assert proxies.resolve("10.0.0.1", "http", [], ["gopher"]) == ("10.0.0.1", "http")
    # Untrusted peer: both headers ignored.
    assert proxies.resolve("192.0.2.9", "http", ["1.1.1.1"], ["https"]) == ("192.0.2.9", "http")
    # A mapped network entry matches the IPv4 peer it normalises to.
    assert proxies.resolve("::ffff:172.16.3.4", "http", ["192.0.2.2"], []) == (
        "192.0.2.2",
        "http",
    )
    assert proxies.resolve("fd00::1", "https", ["192.0.2.3"], []) == ("192.0.2.3", "https")
    # A peer that is not an address (a unix socket path) is passed through untouched.
    assert proxies.resolve("unix-socket", "http", ["1.1.1.1"], []) == ("unix-socket", "http")
    assert proxies.resolve(None, "http", ["1.1.1.1"], []) == (None, "http")


@pytest.mark.parametrize("entry", ["10.0.0.300", "proxy.internal", "*", "10.0.0.0/33", "::g"])
def test_an_invalid_trusted_proxy_refuses_to_start(
    make_settings: SettingsFactory, entry: str
) -> None:
    with pytest.raises(ConfigError, match="KEYTURN_TRUSTED_PROXIES"):
        create_app(make_settings(trusted_proxies=["10.0.0.1", entry]))


# --- Plain http in production (v5.0.0-4.1.2, DESIGN.md section 5) ----------------------------


def _production(make_settings: SettingsFactory, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "env": "production",
        "issuer": "https://id.example.com",
        "argon2_memory_kib": OWASP_ARGON2_MEMORY_KIB,
        "argon2_time_cost": OWASP_ARGON2_TIME_COST,
        "require_verified_email": False,
        "trusted_proxies": [PROXY],
    }
    values.update(overrides)
    return make_settings(**values)


async def test_production_refuses_plain_http_except_probes(
    make_settings: SettingsFactory,
) -> None:
    async with serving(_production(make_settings)) as connect:
        plain = connect(ATTACKER)
        body = {"email": new_email(), "password": PASSWORD}
        refused = await plain.post("/v1/auth/login", json=body)
        assert refused.status_code == 403
        assert refused.json()["code"] == "https_required"
        assert refused.headers["content-type"] == "application/problem+json; charset=utf-8"
        assert refused.headers["content-security-policy"] == API_CSP
        assert "location" not in refused.headers  # a refusal, never a redirect
        assert (await plain.get("/v1/me")).status_code == 403
        assert (await plain.post("/healthz")).status_code == 403
        for probe in ("/healthz", "/readyz"):
            answer = await plain.get(probe)
            assert answer.status_code == 200, answer.text
            assert "strict-transport-security" not in answer.headers
        # A spoofed X-Forwarded-Proto from an untrusted peer does not make http https.
        spoofed = await plain.get("/v1/me", headers={"X-Forwarded-Proto": "https"})
        assert spoofed.json()["code"] == "https_required"


async def test_production_serves_https_direct_and_through_a_trusted_proxy(
    make_settings: SettingsFactory,
) -> None:
    async with serving(_production(make_settings)) as connect:
        direct = connect(ATTACKER, base_url="https://id.example.com")
        assert await _session_ip(direct) == ATTACKER
        proxied = connect(PROXY)
        headers = {"X-Forwarded-For": "192.0.2.77", "X-Forwarded-Proto": "https"}
        assert await _session_ip(proxied, headers) == "192.0.2.77"
        answer = await proxied.get("/v1/me", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        # The proxy saying the client came over http is believed too.
        downgraded = {"X-Forwarded-For": "192.0.2.77", "X-Forwarded-Proto": "http"}
        assert (await proxied.get("/v1/me", headers=downgraded)).status_code == 403


async def test_production_hides_docs_and_schema_unless_enabled_v5_0_0_13_4_5(
    make_settings: SettingsFactory,
) -> None:
    async with serving(_production(make_settings)) as connect:
        http = connect(ATTACKER, base_url="https://id.example.com")
        for path in ("/docs", "/openapi.json"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json; charset=utf-8"
    async with serving(_production(make_settings, docs_enabled=True)) as connect:
        http = connect(ATTACKER, base_url="https://id.example.com")
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/docs")).status_code == 200


# --- Security headers and charset (v5.0.0-3.4.1 .. 3.4.5, 4.1.1) -----------------------------


def _assert_api_headers(answer: httpx.Response, *, https: bool) -> None:
    headers = answer.headers
    where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
    assert headers["content-security-policy"] == API_CSP, where
    assert headers["x-content-type-options"] == "nosniff", where
    assert headers["referrer-policy"] == "no-referrer", where
    assert headers["cross-origin-opener-policy"] == "same-origin", where
    assert headers["cross-origin-resource-policy"] == "same-origin", where
    assert headers["x-request-id"], where
    assert "charset=utf-8" in headers["content-type"], where
    if https:
        hsts = headers["strict-transport-security"]
        assert hsts == "max-age=31536000; includeSubDomains", where
    else:
        assert "strict-transport-security" not in headers, where


@pytest.mark.parametrize("https", [False, True])
async def test_every_answer_carries_the_security_headers_v5_0_0_3_4_1(
    make_settings: SettingsFactory, https: bool
) -> None:
    async with serving(make_settings(max_body_bytes=1024)) as connect:
        http = connect(base_url="https://testserver" if https else "http://testserver")
        email = new_email()
        await http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        answers = [
            login,  # 200
            await http.get("/v1/me", headers=bearer(login.json()["access_token"])),  # 200
            await http.get("/healthz"),  # 200
            await http.get("/v1/me"),  # 401
            await http.get("/no/such/route"),  # 404
            await http.put("/v1/me", json={}),  # 405
            await http.post("/v1/auth/login", content=b"x" * 2048),  # 413 (declared)
            await http.post(
                "/v1/auth/login", content=b"{", headers={"content-type": "application/json"}
            ),  # 400
            await http.post("/v1/auth/login", json={"email": 1}),  # 422
            await http.request("TRACE", "/v1/me"),  # 405 before routing
        ]
        assert [answer.status_code for answer in answers] == [
            200, 200, 200, 401, 404, 405, 413, 400, 422, 405,
        ]  # fmt: skip
        for answer in answers:
            _assert_api_headers(answer, https=https)
        for answer in answers[3:]:
            assert answer.headers["content-type"] == "application/problem+json; charset=utf-8"
        assert answers[0].headers["content-type"] == "application/json; charset=utf-8"


async def test_streamed_oversize_body_gets_the_headers_too(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(max_body_bytes=1024)) as connect:
        http = connect()

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 512

        answer = await http.post("/v1/auth/login", content=chunks())
        assert answer.status_code == 413
        _assert_api_headers(answer, https=False)


async def test_pages_metrics_and_keys_keep_their_own_policies(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings()) as connect:
        http = connect(base_url="https://testserver")
        docs = await http.get("/docs")
        csp = docs.headers["content-security-policy"]
        for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
            assert directive in csp
        assert docs.headers["content-type"] == "text/html; charset=utf-8"
        assert docs.headers["x-content-type-options"] == "nosniff"
        assert docs.headers["strict-transport-security"].startswith("max-age=31536000")
        metrics = await http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=")
        assert metrics.headers["content-type"].count("charset=utf-8") == 1
        jwks = await http.get("/.well-known/jwks.json")
        assert jwks.headers["content-type"] == "application/jwk-set+json; charset=utf-8"
        # Verifiers on other origins fetch the keys.
        assert jwks.headers["cross-origin-resource-policy"] == "cross-origin"
        assert jwks.headers["content-security-policy"] == API_CSP


async def test_an_unexpected_error_still_answers_with_headers(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.get("/boom")
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"
    assert "boom" not in answer.text
    _assert_api_headers(answer, https=False)


def test_charset_is_added_only_to_text() -> None:
    assert with_charset("application/json") == "application/json; charset=utf-8"
    assert with_charset("text/css; charset=utf-8") == "text/css; charset=utf-8"
    assert with_charset("application/xml") == "application/xml; charset=utf-8"
    assert with_charset("image/png") == "image/png"
    assert with_charset("text/plain; Charset=UTF-8") == "text/plain; Charset=UTF-8"


# --- CORS allow-list (v5.0.0-3.4.2) ----------------------------------------------------------


async def test_cors_preflight_and_simple_requests_v5_0_0_3_4_2(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(cors_origins=[ALLOWED_ORIGIN])) as connect:
        http = connect()
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        allowed = await http.options(
            "/v1/auth/login", headers={"Origin": ALLOWED_ORIGIN, **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "access-control-allow-credentials" not in allowed.headers
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "PUT" not in allowed.headers["access-control-allow-methods"]
        assert "Origin" in allowed.headers["vary"]
        _assert_api_headers(allowed, https=False)

        unknown = await http.options("/v1/auth/login", headers={"Origin": EVIL_ORIGIN, **preflight})
        assert unknown.status_code == 400
        assert "access-control-allow-origin" not in unknown.headers
        assert EVIL_ORIGIN not in str(unknown.headers)

        odd_header = {**preflight, "Access-Control-Request-Headers": "x-admin"}
        refused = await http.options("/v1/me", headers={"Origin": ALLOWED_ORIGIN, **odd_header})
        assert refused.status_code == 400

        simple = await http.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "Origin" in simple.headers["vary"]
        exposed = simple.headers["access-control-expose-headers"]
        for name in ("X-Request-ID", "Retry-After", "RateLimit-Remaining"):
            assert name in exposed

        for origin in (EVIL_ORIGIN, "null", ALLOWED_ORIGIN + ".evil.net", "http://app.example.com"):
            answer = await http.get("/healthz", headers={"Origin": origin})
            assert answer.status_code == 200
            assert "access-control-allow-origin" not in answer.headers, origin
            assert "access-control-allow-credentials" not in answer.headers
            assert "Origin" in answer.headers["vary"]


async def test_no_cors_origins_means_no_cross_origin_access(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings()) as connect:
        http = connect()
        answer = await http.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
        assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    "origin", ["*", "null", "https://*.example.com", "https://app.example.com/", "app.example.com"]
)
def test_a_wildcard_or_malformed_cors_origin_refuses_to_start(
    make_settings: SettingsFactory, origin: str
) -> None:
    with pytest.raises(ConfigError, match="KEYTURN_CORS_ORIGINS"):
        create_app(make_settings(cors_origins=[ALLOWED_ORIGIN, origin]))


def test_cors_origins_accepts_ports() -> None:
    assert cors_origins(["http://localhost:5173"]) == ["http://localhost:5173"]


# --- TRACE (v5.0.0-13.4.4) -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "CONNECT", "trace"])
@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/me", "/no/such/route", "/docs"])
async def test_trace_answers_405_everywhere_v5_0_0_13_4_4(
    make_settings: SettingsFactory, method: str, path: str
) -> None:
    async with serving(make_settings()) as connect:
        answer = await connect().request(
            method, path, headers={"Authorization": "Bearer secret", "Cookie": "a=b"}
        )
    assert answer.status_code == 405
    assert answer.json()["code"] == "method_not_allowed"
    assert "TRACE" not in answer.headers["allow"]
    # Nothing of the request comes back (cross-site tracing).
    assert "secret" not in answer.text
    assert "a=b" not in answer.text
    _assert_api_headers(answer, https=False)
