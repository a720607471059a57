"""The lean routes answer exactly as the FastAPI routes (issue 18 item 1).

One database, two apps: ``create_app(s)`` (the hot routes through ``keyturn.api.lean``)
and ``create_app(s, lean_edge=False)`` (everything through FastAPI). Every row of the table
goes to both; status, headers (in order) and body must be equal, and so must the access
log line (route template, method, status). Rows that consume state (a refresh token, an
authorization code) get one value per app; answers carrying fresh tokens compare the
tokens' headers and claims without the per-issue ones (``jti``, times, ``sid``).

The comparison cannot pass vacuously: each answer records which route object served it,
the lean app's rows on a lean (method, path) must come from a ``LeanRoute`` and the
framework app's never, and every lean route must be met by the table.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, lifespan, new_email
from keyturn.api.http.deps import get_principal
from keyturn.api.lean import LEAN_ROUTES, LeanRoute, install_lean_edge
from keyturn.api.rest import me
from keyturn.api.routers import include_routers
from keyturn.app import create_app
from keyturn.cli.openapi import openapi_document
from keyturn.config import Settings
from keyturn.domain import utcnow
from keyturn.errors import CredentialsMissing
from mfa_helpers import enrol_totp
from oauth_helpers import authorize_and_redeem, code_for, pkce_pair, register, signed_in

pytestmark = pytest.mark.anyio

SPA = "https://spa.example.com"
CONSOLE = "https://console.example.com"
STRANGER = "https://evil.example.net"
MAX_BODY = 4096
LEAN, FRAMEWORK = 0, 1
TOKEN_KEYS = ("access_token", "refresh_token", "id_token", "mfa_token")
# Claims that differ between two tokens issued for the same request.
PER_ISSUE_CLAIMS = {"iat", "exp", "nbf", "jti", "sid", "auth_time", "at_hash"}


@dataclass
class World:
    """What the table's requests name; lists hold one value per app (LEAN, FRAMEWORK)."""

    email: str
    mfa_email: str
    access: str
    expired: str
    revoked: str
    key_read: str
    key_narrow: str
    machine: dict[str, Any]
    web: dict[str, Any]
    public: dict[str, Any]
    grant_access: str
    grant_refresh: str
    refresh: list[str]
    refresh_stale: list[str]
    code: list[str]
    verifier: list[str]
    oauth_refresh: list[str]

    @property
    def email_upper(self) -> str:
        return self.email.upper()


class T(str):
    """A value filled from the world: ``T("Bearer {access}")``, ``T("{web[client_id]}")``."""


@dataclass(frozen=True)
class Basic:
    """HTTP Basic client authentication as ``client`` (a World field), or a wrong secret."""

    client: str
    secret: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    headers: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None
    # A list of chunks is streamed (chunked, no Content-Length).
    content: str | bytes | list[bytes] | None = None
    auth: Basic | None = None

    def __str__(self) -> str:
        return f"{self.name}: {self.method} {self.path}"

    def request(self, world: World, side: int) -> dict[str, Any]:
        values = _Side(world, side)

        def fill(value: Any) -> Any:
            if isinstance(value, T):
                return value.format_map(values)
            if isinstance(value, dict):
                return {name: fill(item) for name, item in value.items()}
            return value

        kwargs: dict[str, Any] = {"headers": fill(self.headers)}
        if self.json is not None:
            kwargs["json"] = fill(self.json)
        if self.data is not None:
            kwargs["data"] = fill(self.data)
        if self.content is not None:
            kwargs["content"] = (
                _stream(self.content) if isinstance(self.content, list) else self.content
            )
        if self.auth is not None:
            client = getattr(world, self.auth.client)
            kwargs["auth"] = httpx.BasicAuth(
                client["client_id"], self.auth.secret or client["client_secret"]
            )
        return kwargs


class _Side(dict[str, Any]):
    def __init__(self, world: World, side: int) -> None:
        super().__init__()
        self.world, self.side = world, side

    def __missing__(self, name: str) -> Any:
        value = getattr(self.world, name)
        return value[self.side] if isinstance(value, list) else value


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


ME, LOGIN, REFRESH, TOKEN = "/v1/me", "/v1/auth/login", "/v1/auth/refresh", "/oauth2/token"
INTROSPECT, USERINFO, JWKS = "/oauth2/introspect", "/oauth2/userinfo", "/.well-known/jwks.json"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
OVERSIZE = "A" * (MAX_BODY + 1)
STREAMED = [b"grant_type=client_credentials&scope=", b"A" * MAX_BODY]
ACCESS, GRANT = (
    {"Authorization": T("Bearer {access}")},
    {"Authorization": T("Bearer {grant_access}")},
)
CC = {"grant_type": "client_credentials"}
MACHINE, WEB = Basic("machine"), Basic("web")
CODE = {
    "grant_type": "authorization_code",
    "code": T("{code}"),
    "code_verifier": T("{verifier}"),
    "redirect_uri": T("{web[redirect_uris][0]}"),
}
UNKNOWN_CODE = {**CODE, "code": "nope", "code_verifier": "v" * 43}
REFRESH_GRANT = {"grant_type": "refresh_token", "refresh_token": T("{oauth_refresh}")}
RAW_REFRESH = '{"refresh_token": "x"}'
SIGN_IN = {"email": T("{email}"), "password": PASSWORD}

CASES = [
    # GET /v1/me: the Bearer forms HTTPBearer accepts and refuses, API keys and scopes.
    Case("good bearer", "GET", ME, ACCESS),
    Case("lower-case scheme, blanks", "GET", ME, {"Authorization": T("bearer   {access} ")}),
    Case("no credentials", "GET", ME),
    Case("scheme only", "GET", ME, {"Authorization": "Bearer"}),
    Case("scheme and blanks", "GET", ME, {"Authorization": "Bearer    "}),
    Case("basic scheme", "GET", ME, {"Authorization": "Basic dXNlcjpwYXNz"}),
    Case("garbage bearer", "GET", ME, {"Authorization": "Bearer not.a.jwt"}),
    Case("expired bearer", "GET", ME, {"Authorization": T("Bearer {expired}")}),
    Case("revoked bearer", "GET", ME, {"Authorization": T("Bearer {revoked}")}),
    Case("OAuth client's token", "GET", ME, GRANT),
    Case("API key with me:read", "GET", ME, {"Authorization": T("Bearer {key_read}")}),
    Case("API key without me:read", "GET", ME, {"Authorization": T("Bearer {key_narrow}")}),
    Case("unknown API key", "GET", ME, {"Authorization": "Bearer kt_abcdefgh_" + "x" * 40}),
    Case("HEAD", "HEAD", ME, ACCESS),
    Case("first-party CORS", "GET", ME, {**ACCESS, "Origin": CONSOLE}),
    Case("preflight", "OPTIONS", ME, preflight(CONSOLE, "GET")),
    Case("plain OPTIONS", "OPTIONS", ME),
    Case("POST is 405", "POST", ME, ACCESS),
    Case("PUT is 405", "PUT", ME, ACCESS),
    # POST /v1/auth/login: the token pair, the second step, refusals and body rules.
    Case("good", "POST", LOGIN, json=SIGN_IN),
    Case("second factor", "POST", LOGIN, json={**SIGN_IN, "email": T("{mfa_email}")}),
    Case("email in capitals", "POST", LOGIN, json={**SIGN_IN, "email": T("{email_upper}")}),
    Case("wrong password", "POST", LOGIN, json={**SIGN_IN, "password": "wrong-Horse-9-battery"}),
    Case("unknown account", "POST", LOGIN, json={**SIGN_IN, "email": "nobody@example.com"}),
    Case("not an email", "POST", LOGIN, json={**SIGN_IN, "email": "nobody"}),
    Case("empty password", "POST", LOGIN, json={**SIGN_IN, "password": ""}),
    Case("extra field", "POST", LOGIN, json={**SIGN_IN, "x": 1}),
    Case("missing field", "POST", LOGIN, json={"email": T("{email}")}),
    Case("no body", "POST", LOGIN),
    Case("malformed JSON", "POST", LOGIN, JSON, content='{"email": '),
    Case("form", "POST", LOGIN, data={"email": "a@example.com", "password": "x"}),
    Case("oversize", "POST", LOGIN, json={**SIGN_IN, "password": OVERSIZE}),
    Case("GET is 405", "GET", LOGIN),
    Case("preflight", "OPTIONS", LOGIN, preflight(CONSOLE)),
    # POST /v1/auth/refresh: rotation, reuse, and FastAPI's body rules.
    Case("good", "POST", REFRESH, json={"refresh_token": T("{refresh}")}),
    Case("older generation", "POST", REFRESH, json={"refresh_token": T("{refresh_stale}")}),
    Case("unknown token", "POST", REFRESH, json={"refresh_token": "A" * 43}),
    Case("empty token", "POST", REFRESH, json={"refresh_token": ""}),
    Case("extra field", "POST", REFRESH, json={"refresh_token": "A" * 43, "x": 1}),
    Case("missing field", "POST", REFRESH, json={}),
    Case("wrong type", "POST", REFRESH, json={"refresh_token": 5}),
    Case("JSON list", "POST", REFRESH, json=["refresh_token"]),
    Case("JSON null", "POST", REFRESH, JSON, content="null"),
    Case("JSON string", "POST", REFRESH, JSON, content='"token"'),
    Case("no body", "POST", REFRESH),
    Case("empty body, JSON type", "POST", REFRESH, JSON, content=b""),
    Case("malformed JSON", "POST", REFRESH, JSON, content='{"refresh_token": '),
    Case("invalid UTF-8", "POST", REFRESH, JSON, content=b'{"refresh_token": "\xff\xfe"}'),
    Case("UTF-16 JSON", "POST", REFRESH, JSON, content=RAW_REFRESH.encode("utf-16")),
    Case(
        "charset",
        "POST",
        REFRESH,
        {"Content-Type": "application/json; charset=utf-8"},
        content=RAW_REFRESH,
    ),
    Case(
        "+json type",
        "POST",
        REFRESH,
        {"Content-Type": "application/merge-patch+json"},
        content=RAW_REFRESH,
    ),
    Case("text/plain", "POST", REFRESH, {"Content-Type": "text/plain"}, content=RAW_REFRESH),
    Case("odd type", "POST", REFRESH, {"Content-Type": "json"}, content=RAW_REFRESH),
    Case("form", "POST", REFRESH, data={"refresh_token": "x"}),
    Case("no content type", "POST", REFRESH, content=RAW_REFRESH),
    Case("oversize", "POST", REFRESH, json={"refresh_token": OVERSIZE}),
    Case("oversize, streamed", "POST", REFRESH, JSON, content=STREAMED),
    Case("GET is 405", "GET", REFRESH),
    # POST /oauth2/token: client authentication, grants, form rules, CORS.
    Case("client_credentials", "POST", TOKEN, data=CC, auth=MACHINE),
    Case("narrower scope", "POST", TOKEN, data={**CC, "scope": "me:read"}, auth=MACHINE),
    Case("wider scope", "POST", TOKEN, data={**CC, "scope": "keys:write"}, auth=MACHINE),
    Case("own origin", "POST", TOKEN, {"Origin": SPA}, data=CC, auth=MACHINE),
    Case("stranger origin", "POST", TOKEN, {"Origin": STRANGER}, data=CC, auth=MACHINE),
    Case(
        "secret in the form, Basic client",
        "POST",
        TOKEN,
        data={
            **CC,
            "client_id": T("{machine[client_id]}"),
            "client_secret": T("{machine[client_secret]}"),
        },
    ),
    Case("bad secret", "POST", TOKEN, data=CC, auth=Basic("machine", "wrong")),
    Case(
        "bad secret, own origin",
        "POST",
        TOKEN,
        {"Origin": SPA},
        data=CC,
        auth=Basic("machine", "x"),
    ),
    Case("unknown client", "POST", TOKEN, data={**CC, "client_id": "nobody"}),
    Case("no client", "POST", TOKEN, data=CC),
    Case("two methods", "POST", TOKEN, data={**CC, "client_secret": "x"}, auth=MACHINE),
    Case("malformed basic", "POST", TOKEN, {"Authorization": "Basic !!!"}, data=CC),
    Case("unsupported grant", "POST", TOKEN, data={"grant_type": "password"}, auth=MACHINE),
    Case("missing grant_type", "POST", TOKEN, data={"scope": "me:read"}, auth=MACHINE),
    Case(
        "repeated parameter", "POST", TOKEN, FORM, content="grant_type=a&grant_type=b", auth=MACHINE
    ),
    Case("JSON body", "POST", TOKEN, json=CC, auth=MACHINE),
    Case("no body", "POST", TOKEN, auth=MACHINE),
    Case("oversize", "POST", TOKEN, data={**CC, "scope": OVERSIZE}, auth=MACHINE),
    Case("oversize, streamed", "POST", TOKEN, FORM, content=STREAMED, auth=MACHINE),
    Case("authorization_code", "POST", TOKEN, data=CODE, auth=WEB),
    Case("unknown code", "POST", TOKEN, data=UNKNOWN_CODE, auth=WEB),
    Case("refresh_token grant", "POST", TOKEN, data=REFRESH_GRANT, auth=WEB),
    Case(
        "public client", "POST", TOKEN, data={**UNKNOWN_CODE, "client_id": T("{public[client_id]}")}
    ),
    Case("preflight, client origin", "OPTIONS", TOKEN, preflight(SPA)),
    Case("preflight, stranger", "OPTIONS", TOKEN, preflight(STRANGER)),
    Case("GET is 405", "GET", TOKEN),
    # POST /oauth2/introspect (RFC 7662): active, inactive, who may ask.
    Case("active access token", "POST", INTROSPECT, data={"token": T("{grant_access}")}, auth=WEB),
    Case(
        "active refresh token",
        "POST",
        INTROSPECT,
        data={"token": T("{grant_refresh}"), "token_type_hint": "refresh_token"},
        auth=WEB,
    ),
    Case("first-party token", "POST", INTROSPECT, data={"token": T("{access}")}, auth=WEB),
    Case(
        "another client's token",
        "POST",
        INTROSPECT,
        data={"token": T("{grant_access}")},
        auth=MACHINE,
    ),
    Case("inactive token", "POST", INTROSPECT, data={"token": "garbage"}, auth=WEB),
    Case("missing token", "POST", INTROSPECT, data={"token_type_hint": "x"}, auth=WEB),
    Case("long token", "POST", INTROSPECT, data={"token": "A" * 3000}, auth=WEB),
    Case(
        "public client",
        "POST",
        INTROSPECT,
        data={"token": "x", "client_id": T("{public[client_id]}")},
    ),
    Case("bad secret", "POST", INTROSPECT, data={"token": "x"}, auth=Basic("web", "wrong")),
    Case("JSON body", "POST", INTROSPECT, json={"token": "x"}, auth=WEB),
    Case("GET is 405", "GET", INTROSPECT),
    # GET|POST /oauth2/userinfo (OIDC Core 5.3, RFC 6750 sections 2 and 3).
    Case("GET bearer", "GET", USERINFO, GRANT),
    Case("GET bearer, own origin", "GET", USERINFO, {**GRANT, "Origin": SPA}),
    Case("GET no token", "GET", USERINFO),
    Case("GET no token, own origin", "GET", USERINFO, {"Origin": SPA}),
    Case("GET basic scheme", "GET", USERINFO, {"Authorization": "Basic eDp5"}),
    Case("GET garbage", "GET", USERINFO, {"Authorization": "Bearer garbage"}),
    Case("GET first-party token", "GET", USERINFO, ACCESS),
    Case("GET expired token", "GET", USERINFO, {"Authorization": T("Bearer {expired}")}),
    Case("HEAD", "HEAD", USERINFO, GRANT),
    Case("POST bearer", "POST", USERINFO, GRANT),
    Case("POST form token", "POST", USERINFO, data={"access_token": T("{grant_access}")}),
    Case("POST both ways", "POST", USERINFO, GRANT, data={"access_token": T("{grant_access}")}),
    Case("POST JSON body", "POST", USERINFO, json={"access_token": T("{grant_access}")}),
    Case(
        "POST repeated parameter", "POST", USERINFO, FORM, content="access_token=a&access_token=b"
    ),
    Case("preflight", "OPTIONS", USERINFO, preflight(SPA, "GET")),
    Case("PUT is 405", "PUT", USERINFO),
    # GET /.well-known/jwks.json
    Case("GET", "GET", JWKS),
    Case("GET from another origin", "GET", JWKS, {"Origin": STRANGER}),
    Case("HEAD", "HEAD", JWKS),
    Case("POST is 405", "POST", JWKS),
]

# What each row answers ("method path name status"): both apps must give it.
EXPECTED = """
GET /v1/me good bearer 200
GET /v1/me lower-case scheme, blanks 200
GET /v1/me no credentials 401
GET /v1/me scheme only 401
GET /v1/me scheme and blanks 401
GET /v1/me basic scheme 401
GET /v1/me garbage bearer 401
GET /v1/me expired bearer 401
GET /v1/me revoked bearer 401
GET /v1/me OAuth client's token 401
GET /v1/me API key with me:read 200
GET /v1/me API key without me:read 403
GET /v1/me unknown API key 401
HEAD /v1/me HEAD 200
GET /v1/me first-party CORS 200
OPTIONS /v1/me preflight 200
OPTIONS /v1/me plain OPTIONS 405
POST /v1/me POST is 405 405
PUT /v1/me PUT is 405 405
POST /v1/auth/login good 200
POST /v1/auth/login second factor 200
POST /v1/auth/login email in capitals 200
POST /v1/auth/login wrong password 401
POST /v1/auth/login unknown account 401
POST /v1/auth/login not an email 422
POST /v1/auth/login empty password 422
POST /v1/auth/login extra field 422
POST /v1/auth/login missing field 422
POST /v1/auth/login no body 422
POST /v1/auth/login malformed JSON 400
POST /v1/auth/login form 415
POST /v1/auth/login oversize 413
GET /v1/auth/login GET is 405 405
OPTIONS /v1/auth/login preflight 200
POST /v1/auth/refresh good 200
POST /v1/auth/refresh older generation 401
POST /v1/auth/refresh unknown token 401
POST /v1/auth/refresh empty token 422
POST /v1/auth/refresh extra field 422
POST /v1/auth/refresh missing field 422
POST /v1/auth/refresh wrong type 422
POST /v1/auth/refresh JSON list 422
POST /v1/auth/refresh JSON null 422
POST /v1/auth/refresh JSON string 422
POST /v1/auth/refresh no body 422
POST /v1/auth/refresh empty body, JSON type 422
POST /v1/auth/refresh malformed JSON 400
POST /v1/auth/refresh invalid UTF-8 400
POST /v1/auth/refresh UTF-16 JSON 401
POST /v1/auth/refresh charset 401
POST /v1/auth/refresh +json type 401
POST /v1/auth/refresh text/plain 415
POST /v1/auth/refresh odd type 415
POST /v1/auth/refresh form 415
POST /v1/auth/refresh no content type 415
POST /v1/auth/refresh oversize 413
POST /v1/auth/refresh oversize, streamed 413
GET /v1/auth/refresh GET is 405 405
POST /oauth2/token client_credentials 200
POST /oauth2/token narrower scope 200
POST /oauth2/token wider scope 400
POST /oauth2/token own origin 200
POST /oauth2/token stranger origin 200
POST /oauth2/token secret in the form, Basic client 401
POST /oauth2/token bad secret 401
POST /oauth2/token bad secret, own origin 401
POST /oauth2/token unknown client 401
POST /oauth2/token no client 401
POST /oauth2/token two methods 400
POST /oauth2/token malformed basic 401
POST /oauth2/token unsupported grant 400
POST /oauth2/token missing grant_type 400
POST /oauth2/token repeated parameter 400
POST /oauth2/token JSON body 400
POST /oauth2/token no body 400
POST /oauth2/token oversize 413
POST /oauth2/token oversize, streamed 413
POST /oauth2/token authorization_code 200
POST /oauth2/token unknown code 400
POST /oauth2/token refresh_token grant 200
POST /oauth2/token public client 400
OPTIONS /oauth2/token preflight, client origin 204
OPTIONS /oauth2/token preflight, stranger 400
GET /oauth2/token GET is 405 405
POST /oauth2/introspect active access token 200
POST /oauth2/introspect active refresh token 200
POST /oauth2/introspect first-party token 200
POST /oauth2/introspect another client's token 200
POST /oauth2/introspect inactive token 200
POST /oauth2/introspect missing token 400
POST /oauth2/introspect long token 200
POST /oauth2/introspect public client 401
POST /oauth2/introspect bad secret 401
POST /oauth2/introspect JSON body 400
GET /oauth2/introspect GET is 405 405
GET /oauth2/userinfo GET bearer 200
GET /oauth2/userinfo GET bearer, own origin 200
GET /oauth2/userinfo GET no token 401
GET /oauth2/userinfo GET no token, own origin 401
GET /oauth2/userinfo GET basic scheme 400
GET /oauth2/userinfo GET garbage 401
GET /oauth2/userinfo GET first-party token 403
GET /oauth2/userinfo GET expired token 401
HEAD /oauth2/userinfo HEAD 200
POST /oauth2/userinfo POST bearer 200
POST /oauth2/userinfo POST form token 200
POST /oauth2/userinfo POST both ways 400
POST /oauth2/userinfo POST JSON body 400
POST /oauth2/userinfo POST repeated parameter 400
OPTIONS /oauth2/userinfo preflight 204
PUT /oauth2/userinfo PUT is 405 405
GET /.well-known/jwks.json GET 200
GET /.well-known/jwks.json GET from another origin 200
HEAD /.well-known/jwks.json HEAD 200
POST /.well-known/jwks.json POST is 405 405
"""


def _expected() -> dict[str, int]:
    rows = (line.rsplit(" ", 1) for line in EXPECTED.strip().splitlines())
    return {row: int(status) for row, status in rows}


class RouteSpy:
    """The app behind it, recording which route object served the last request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.route: object = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        # The router put the route into this very scope (the access log reads it there).
        self.route = scope.get("route")


def _token_shape(value: str) -> Any:
    if value.count(".") == 2:
        claims = jwt.decode(value, options={"verify_signature": False})
        return {
            "header": jwt.get_unverified_header(value),
            "claims": {k: v for k, v in claims.items() if k not in PER_ISSUE_CLAIMS},
        }
    return {"opaque": len(value)}


def _comparable_body(answer: httpx.Response) -> Any:
    if not answer.content or "json" not in answer.headers.get("content-type", ""):
        return answer.content
    body = json.loads(answer.content)
    if isinstance(body, dict):
        for key in TOKEN_KEYS:
            if isinstance(body.get(key), str):
                body[key] = _token_shape(body[key])
    return body


def _comparable(answer: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    return answer.status_code, list(answer.headers.multi_items()), _comparable_body(answer)


async def _send(app: RouteSpy, case: Case, world: World, side: int, number: int) -> Any:
    # A network of its own per row and app: no throttle counts from other rows.
    peer = f"198.51.{100 + side}.{number + 1}"
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    kwargs = case.request(world, side)
    headers = {**kwargs.pop("headers"), "X-Request-ID": f"lean-edge-{number:04d}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with capture_logs() as events:
            answer = await http.request(case.method, case.path, headers=headers, **kwargs)
    access = [(e["method"], e["path"], e["status"]) for e in events if e["event"] == "request"]
    return _comparable(answer), access, app.route


async def _world(app: FastAPI) -> World:
    """Accounts, keys, clients and grants, made through the lean app before the other
    app starts (its start restores the deny-list from the database: the revoked session)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        email, mfa_email = new_email(), new_email()
        for address in (email, mfa_email):
            assert (
                await http.post("/v1/auth/signup", json={"email": address, "password": PASSWORD})
            ).status_code == 202

        async def login(address: str = email) -> dict[str, Any]:
            answer = await http.post(
                "/v1/auth/login", json={"email": address, "password": PASSWORD}
            )
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        await enrol_totp(http, (await login(mfa_email))["access_token"])

        first = await login()
        access = first["access_token"]
        claims = jwt.decode(access, options={"verify_signature": False})
        now = int(utcnow().timestamp())
        expired = app.state.services.keys.sign(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, typ="at+jwt"
        )
        revoked = (await login())["access_token"]
        assert (await http.post("/v1/auth/logout", headers=bearer(revoked))).status_code == 204
        keys = []
        for scopes in (["me:read"], ["sessions:read"]):
            made = await http.post(
                "/v1/me/api-keys",
                json={"name": f"k-{scopes[0]}", "scopes": scopes},
                headers=bearer(access),
            )
            assert made.status_code == 201, made.text
            keys.append(made.json()["key"])
        refresh = [(await login())["refresh_token"] for _ in (LEAN, FRAMEWORK)]
        stale = []
        for _ in (LEAN, FRAMEWORK):
            token = (await login())["refresh_token"]
            second = (await http.post("/v1/auth/refresh", json={"refresh_token": token})).json()
            third = await http.post(
                "/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
            )
            assert third.status_code == 200, third.text
            stale.append(token)
        machine = await register(
            app,
            http,
            allowed_cors_origins=[SPA],
            redirect_uris=[],
            grant_types=["client_credentials"],
            response_types=[],
            scope="me:read users:read",
        )
        web = await register(app, http, allowed_cors_origins=[SPA])
        public = await register(
            app, http, token_endpoint_auth_method="none", grant_types=["authorization_code"]
        )
    browser_transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=browser_transport, base_url="http://testserver"
    ) as browser:
        await signed_in(browser, name="Lean Edge")
        scope = "openid profile email offline_access"
        grants = []
        for _ in range(3):
            answer = await authorize_and_redeem(browser, web, scope=scope)
            assert answer.status_code == 200, answer.text
            grants.append(answer.json())
        codes, verifiers = [], []
        for _ in (LEAN, FRAMEWORK):
            verifier, challenge = pkce_pair()
            pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
            codes.append((await code_for(browser, web, scope=scope, **pkce))[0])
            verifiers.append(verifier)
    return World(
        email=email,
        mfa_email=mfa_email,
        access=access,
        expired=expired,
        revoked=revoked,
        key_read=keys[0],
        key_narrow=keys[1],
        machine=machine,
        web=web,
        public=public,
        grant_access=grants[0]["access_token"],
        grant_refresh=grants[0]["refresh_token"],
        refresh=refresh,
        refresh_stale=stale,
        code=codes,
        verifier=verifiers,
        oauth_refresh=[grants[1]["refresh_token"], grants[2]["refresh_token"]],
    )


@pytest.fixture
async def apps(make_settings: SettingsFactory) -> AsyncIterator[tuple[RouteSpy, RouteSpy, World]]:
    settings = make_settings(
        cors_origins=[CONSOLE], max_body_bytes=MAX_BODY, limit_ip_per_minute=100_000
    )
    lean = create_app(settings)
    framework = create_app(settings, lean_edge=False)
    async with lifespan(lean):
        world = await _world(lean)
        async with lifespan(framework):
            yield RouteSpy(lean), RouteSpy(framework), world


def _served_by(route: object) -> tuple[str, str] | None:
    if route is None:
        return None
    return type(route).__name__, str(getattr(route, "path", ""))


async def test_lean_routes_answer_as_the_framework_routes(
    apps: tuple[RouteSpy, RouteSpy, World],
) -> None:
    lean, framework, world = apps
    lean_keys = {(method, path) for method, path, _ in LEAN_ROUTES}
    met: set[tuple[str, str]] = set()
    mismatches = []
    expected = _expected()
    assert len(expected) == len(CASES), "one expected status per row"
    for number, case in enumerate(CASES):
        lean_answer, lean_log, lean_route = await _send(lean, case, world, LEAN, number)
        framework_answer, framework_log, framework_route = await _send(
            framework, case, world, FRAMEWORK, number
        )
        assert lean_answer[0] == expected[f"{case.method} {case.path} {case.name}"], case
        if lean_answer != framework_answer or lean_log != framework_log:
            mismatches.append(
                f"{case}\n  lean:      {lean_answer} {lean_log}"
                f"\n  framework: {framework_answer} {framework_log}"
            )
        # Which route answered: the framework app never used a lean route; the lean app
        # used one exactly where the framework app's route is a lean (method, path).
        method = "GET" if case.method == "HEAD" else case.method
        assert not isinstance(framework_route, LeanRoute), case
        if isinstance(framework_route, APIRoute) and (method, framework_route.path) in lean_keys:
            assert isinstance(lean_route, LeanRoute), f"{case}: served by {lean_route!r}"
            assert lean_route.path == framework_route.path, case
            met.add((method, lean_route.path))
        else:
            assert _served_by(lean_route) == _served_by(framework_route), case
    assert not mismatches, "\n".join(mismatches)
    assert met == lean_keys, f"lean routes the table never reached: {lean_keys - met}"


async def test_the_lean_edge_skips_fastapi_dependency_injection(
    apps: tuple[RouteSpy, RouteSpy, World],
) -> None:
    """An override of the principal dependency reaches the framework route only."""
    lean, framework, world = apps
    called: list[str] = []

    async def spy() -> None:
        called.append("dependency")
        raise CredentialsMissing

    for app in (lean.app, framework.app):
        app.dependency_overrides[get_principal] = spy
    transport = httpx.ASGITransport(app=lean.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.get("/v1/me", headers=bearer(world.access))
    assert answer.status_code == 200, answer.text
    assert called == []
    transport = httpx.ASGITransport(app=framework.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.get("/v1/me", headers=bearer(world.access))
    assert answer.status_code == 401
    assert called == ["dependency"]


def test_every_lean_route_has_a_framework_twin_in_the_openapi_document() -> None:
    paths = openapi_document()["paths"]
    for method, path, _ in LEAN_ROUTES:
        assert method.lower() in paths[path], f"{method} {path}"


# The per-IP ceiling of the credential routes, at one request a minute: each answer in
# turn, from a network of its own per app (a Redis backend shares the counts).
CEILING_STEPS = [
    ("POST", TOKEN, {"data": {**CC, "client_id": "nobody"}}),
    ("POST", TOKEN, {"data": {**CC, "client_id": "nobody"}}),
    ("POST", INTROSPECT, {"data": {"token": "x", "client_id": "nobody"}}),
    ("POST", REFRESH, {"json": {"refresh_token": "A" * 43}}),
    # FastAPI parses the body before the ceiling counts: malformed JSON is still a 400.
    ("POST", REFRESH, {"content": "{", "headers": JSON}),
    ("POST", REFRESH, {"json": {"refresh_token": "A" * 43, "extra": 1}}),
    ("POST", LOGIN, {"json": {"email": "nobody@example.com", "password": PASSWORD}}),
    ("POST", LOGIN, {"content": "{", "headers": JSON}),
]
# Seconds until the window frees a slot: they may tick between the two apps' answers.
TIME_HEADERS = {"retry-after", "ratelimit-reset"}


async def test_the_per_ip_ceiling_answers_as_the_framework(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(limit_ip_per_minute=1)
    answers: list[list[Any]] = [[], []]
    for side, app in enumerate((create_app(settings), create_app(settings, lean_edge=False))):
        async with lifespan(app):
            transport = httpx.ASGITransport(app=app, client=(f"203.0.113.{side + 1}", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                for number, (method, path, kwargs) in enumerate(CEILING_STEPS):
                    headers = {**kwargs.get("headers", {}), "X-Request-ID": f"ceiling-{number:04d}"}
                    sent = {key: value for key, value in kwargs.items() if key != "headers"}
                    answer = await http.request(method, path, headers=headers, **sent)
                    answers[side].append(
                        (
                            answer.status_code,
                            [
                                (k, v)
                                for k, v in answer.headers.multi_items()
                                if k not in TIME_HEADERS
                            ],
                            answer.content,
                        )
                    )
    assert [status for status, _, _ in answers[LEAN]] == [401, 429, 429, 429, 400, 429, 429, 400]
    assert answers[LEAN] == answers[FRAMEWORK]


def test_a_lean_route_without_a_framework_twin_refuses_to_start(settings: Settings) -> None:
    twins = include_routers(FastAPI(), settings, None)
    install_lean_edge(FastAPI(), twins=twins)  # every twin there: it starts
    without_me = [router for router in twins if router is not me.router]
    with pytest.raises(RuntimeError, match=r"route: GET /v1/me$"):
        install_lean_edge(FastAPI(), twins=without_me)
    with pytest.raises(
        RuntimeError,
        match="GET /v1/me, POST /v1/auth/login, POST /v1/auth/refresh, POST /oauth2/token",
    ):
        install_lean_edge(FastAPI(), twins=[])
