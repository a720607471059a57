"""Injection, type juggling and mass assignment on every JSON route of the OpenAPI document.

The routes and their fields come from the app's own ``/openapi.json`` (request bodies of
``application/json``), so a field added later is attacked automatically. Every request
carries a valid Bearer token of a fresh user, so protected routes get past authentication.

- Injection strings (SQL, SMTP/header CRLF, NUL, confusables, RTL override, template
  syntax, markup, very long) in every text field: a 4xx, or a 2xx that stored the value
  inertly (a name comes back verbatim), never a 5xx.
- Type juggling (booleans, numbers, arrays, objects where strings go): 422.
- Mass assignment (``roles``, ``email_verified``, ``id``): 422 and nothing changes.

ASVS v5.0.0-1.2.x / v5.0.0-1.3.x (injection prevention, encoding on output),
v5.0.0-2.2.1 (input validated against the expected structure and types),
v5.0.0-15.3.3 (mass assignment), v5.0.0-16.5.3 (no unhandled server errors).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, new_email, signup_login
from keyturn.config import Settings
from passkey_helpers import SHAPED_CREDENTIALS

pytestmark = pytest.mark.anyio

# Every case signs a fresh user up; the limits are proven by their own tests.
RAISED_LIMITS = {
    "limit_ip_per_minute": 1_000_000,
    "limit_failures_per_account_ip": 1_000_000,
    "limit_failures_per_account": 1_000_000,
    "limit_signups_per_ip_per_hour": 1_000_000,
    "limit_mails_per_address_per_hour": 1_000_000,
}
TEMPLATE = "{{7*'7'}}"
EVALUATED_TEMPLATE = "7777777"
INJECTIONS = {
    "sql-or": "' OR 1=1--",
    "sql-drop": '"; DROP TABLE users;--',
    "crlf-bcc": "a@b.c\r\nBcc: x@y.z",
    "crlf-header": "x\r\nX-Injected: yes",
    "nul": "abc\x00def",
    "confusable": "аdmin@exаmple.com",  # Cyrillic "а" (U+0430)
    "rtl-override": "\u202egnp.exe",
    "template": TEMPLATE,
    "template-dollar": "${7*7}#{7*7}",
    "script": "<script>alert(1)</script>",
    "long": "A" * 5000,
    "very-long": "B" * 200_000,
}
EMAIL_INJECTIONS = {
    "email-sql": "x'OR'1'='1@example.com",
    "email-crlf": "user@example.com\r\nBcc: x@y.z",
    "email-lf": "user@example.com\nRCPT TO:<x@y.z>",
    "email-nul": "user\x00@example.com",
    "email-confusable": "user@exаmple.com",
    "email-rtl": "\u202euser@example.com",
    "email-quoted": '"a\\"b"@example.com',
}
# A value of the wrong JSON type for a string field.
JUGGLED = {
    "true": True,
    "number": 1234567890,
    "float": 1.5,
    "array": ["a@b.c"],
    "object": {"$ne": ""},
}
# Fields that are stored and shown back, with the route that shows them.
STORED_TEXT_FIELDS = {"name"}
# Where a route's stored ``name`` is shown back (default: the user's own name on /v1/me).
NAME_SHOWN_AT: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "/v1/me/api-keys": ("/v1/me/api-keys", lambda body: body["items"][0]["name"]),
}
DEFAULT_NAME_SHOWN_AT: tuple[str, Callable[[Any], Any]] = ("/v1/me", lambda body: body["name"])
VALID_VALUES = {
    "password": PASSWORD,
    "current_password": PASSWORD,
    "new_password": "another long password 42",
    "name": "Ada",
    "refresh_token": "A" * 43,
    "token": "A" * 43,
    "description": "A role",
    "permissions": [],
    "email_verified": False,
    "disabled": False,
    "scopes": ["me:read"],
    "expires_at": None,
    # OAuth clients (RFC 7591 metadata)
    "client_name": "Web app",
    "redirect_uris": ["https://app.example.com/cb"],
    "post_logout_redirect_uris": [],
    "grant_types": ["authorization_code"],
    "response_types": ["code"],
    "scope": "openid",
    "token_endpoint_auth_method": "client_secret_basic",
    "allowed_cors_origins": [],
    "require_pkce": True,
    "id_token_signed_response_alg": "RS256",
    "client_uri": "https://app.example.com",
    "policy_uri": "https://app.example.com/privacy",
    "tos_uri": "https://app.example.com/terms",
    # A TOTP code (issue 15)
    "code": "123456",
}


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """The ``client``/``app`` fixtures of this module run with the limits raised."""
    return make_settings(**RAISED_LIMITS)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def is_text(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "string" for option in options)


def json_routes(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """``(method, path, properties)`` of every operation with a JSON request body."""
    document = app.openapi()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            schema = resolve(document, body["schema"])
            properties = {
                name: resolve(document, value) for name, value in schema["properties"].items()
            }
            found.append((method.upper(), path, properties))
    assert found, "the OpenAPI document lists no JSON route"
    return found


def valid_body(properties: dict[str, Any], email: str) -> dict[str, Any]:
    body = {}
    for name, schema in properties.items():
        if schema.get("format") == "email" or name.endswith("email"):
            body[name] = email
        elif name == "credential":
            # WebAuthn (issue 15): the shape of this route's credential, by its model name.
            body[name] = SHAPED_CREDENTIALS[schema["title"]]
        else:
            assert name in VALID_VALUES, f"teach test_injection a valid value for {name!r}"
            body[name] = VALID_VALUES[name]
    return body


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def send(
    client: httpx.AsyncClient, method: str, path: str, body: Any, token: str
) -> httpx.Response:
    return await client.request(method, concrete(path), json=body, headers=bearer(token))


async def test_injection_strings_in_every_text_field_never_cause_5xx(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """v5.0.0-1.2.x / v5.0.0-16.5.3: every text field x every payload: 4xx or stored inertly."""
    failures = []
    attempts = 0
    for method, path, properties in json_routes(app):
        for field, schema in properties.items():
            if not is_text(schema):
                continue
            payloads = dict(INJECTIONS)
            if schema.get("format") == "email":
                payloads.update(EMAIL_INJECTIONS)
            for label, payload in payloads.items():
                user = await signup_login(client)
                body = valid_body(properties, new_email())
                body[field] = payload
                attempts += 1
                where = f"{method} {path} {field}={label}"
                try:
                    answer = await send(client, method, path, body, user["access_token"])
                except Exception as exc:  # the ASGI transport re-raises what a server 500s on
                    failures.append(f"{where}: unhandled {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                if answer.status_code >= 500:
                    failures.append(f"{where}: {answer.status_code} {answer.text[:200]}")
                    continue
                if answer.is_success and field in STORED_TEXT_FIELDS:
                    owner = user["access_token"]
                    if {"email", "password"} <= set(body):
                        # The route created an account (signup): read that one back.
                        login = await client.post(
                            "/v1/auth/login",
                            json={"email": body["email"], "password": body["password"]},
                        )
                        owner = login.json()["access_token"]
                    shown_at, read_name = NAME_SHOWN_AT.get(path, DEFAULT_NAME_SHOWN_AT)
                    shown = read_name((await client.get(shown_at, headers=bearer(owner))).json())
                    if shown != payload.strip():
                        failures.append(f"{where}: stored as {shown!r}")
                # An address with CR/LF/NUL must never be taken (SMTP header injection).
                controls = any(char in payload for char in "\r\n\x00")
                if schema.get("format") == "email" and answer.is_success and controls:
                    failures.append(f"{where}: accepted an address with a control character")
    assert attempts > 50
    assert not failures, "\n".join(failures)


async def test_name_with_template_syntax_is_stored_verbatim(client: httpx.AsyncClient) -> None:
    """v5.0.0-1.3.x: a name is data, never evaluated, on signup and on PATCH /v1/me."""
    email = new_email()
    signup = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": TEMPLATE}
    )
    assert signup.status_code == 202, signup.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = login.json()["access_token"]
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.json()["name"] == TEMPLATE
    for name in ("<script>alert(1)</script>", "${7*7}", TEMPLATE):
        patched = await client.patch("/v1/me", json={"name": name}, headers=bearer(token))
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == name
        assert (await client.get("/v1/me", headers=bearer(token))).json()["name"] == name


async def test_wrong_json_types_are_refused_with_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """v5.0.0-2.2.1: booleans, numbers, arrays and objects where a string goes: 422."""
    user = await signup_login(client)
    failures = []
    for method, path, properties in json_routes(app):
        if path.startswith("/v1/admin/"):
            # Authorization comes first: a plain user gets 403 before the body is read
            # (test_bad_input drives these routes as an administrator).
            continue
        for field, schema in properties.items():
            if not is_text(schema):
                continue
            for label, value in JUGGLED.items():
                body = valid_body(properties, user["email"])
                body[field] = value
                answer = await send(client, method, path, body, user["access_token"])
                if answer.status_code != 422:
                    failures.append(f"{method} {path} {field}={label}: {answer.status_code}")
        # The whole body of the wrong type, too.
        for label, value in (("array", [valid_body(properties, user["email"])]), ("null", None)):
            answer = await send(client, method, path, value, user["access_token"])
            if answer.status_code != 422:
                failures.append(f"{method} {path} body={label}: {answer.status_code}")
    assert not failures, "\n".join(failures)
    me = await client.get("/v1/me", headers=bearer(user["access_token"]))
    assert me.status_code == 200


MASS_ASSIGNMENT = {
    "roles": ["admin"],
    "email_verified": True,
    "id": "00000000-0000-0000-0000-000000000001",
    "disabled": False,
    "password_hash": "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA",
}


@pytest.mark.parametrize("field", sorted(MASS_ASSIGNMENT))
async def test_mass_assignment_on_signup_is_refused(client: httpx.AsyncClient, field: str) -> None:
    """v5.0.0-15.3.3: signup with a privileged field: 422, and no account was created."""
    email = new_email()
    body = {"email": email, "password": PASSWORD, field: MASS_ASSIGNMENT[field]}
    answer = await client.post("/v1/auth/signup", json=body)
    assert answer.status_code == 422, answer.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401


@pytest.mark.parametrize("field", sorted(MASS_ASSIGNMENT))
async def test_mass_assignment_on_patch_me_is_refused(
    client: httpx.AsyncClient, field: str
) -> None:
    """v5.0.0-15.3.3: PATCH /v1/me with a privileged field: 422, and the user is unchanged."""
    user = await signup_login(client)
    headers = bearer(user["access_token"])
    before = (await client.get("/v1/me", headers=headers)).json()
    answer = await client.patch(
        "/v1/me", json={"name": "Mallory", field: MASS_ASSIGNMENT[field]}, headers=headers
    )
    assert answer.status_code == 422, answer.text
    after = (await client.get("/v1/me", headers=headers)).json()
    assert after == before
    assert after["roles"] == [] or "admin" not in after["roles"]
    assert after["email_verified"] is False
