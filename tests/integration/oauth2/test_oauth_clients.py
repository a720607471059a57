"""OAuth 2.0 client registry (``/v1/admin/clients``) and client authentication.

Secrets are shown once and stored only as keyed digests; redirect URIs follow RFC 6749
section 3.1.2, RFC 9700 section 4.1 and RFC 8252 sections 7-8; every change is audited;
``authenticate`` answers alike for an unknown client, a wrong secret and a wrong method,
and goes through the credential guard (throttle, audit).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from conftest import SettingsFactory
from helpers import TEST_SECRET, admin_headers, bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import OAuthClientRow
from keyturn.domain import ClientInfo
from keyturn.errors import InvalidClient, RateLimited
from keyturn.security.digests import Digester, KeyRing
from keyturn.services.oauth2 import clients as clients_module
from keyturn.services.oauth2 import decode_basic_credentials

pytestmark = pytest.mark.anyio

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
WEB = {"client_name": "Web app", "redirect_uris": ["https://app.example.com/callback"]}
NATIVE = {
    "client_name": "Phone app",
    "redirect_uris": ["com.example.app:/callback", "http://127.0.0.1/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
}
HERE = ClientInfo(ip="203.0.113.7")


async def register(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    answer = await client.post("/v1/admin/clients", json={**WEB, **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def stored_row(settings: Settings, client_id: str) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return (
                await connection.execute(
                    select(OAuthClientRow).where(OAuthClientRow.client_id == client_id)
                )
            ).one_or_none()
    finally:
        await engine.dispose()


@pytest.fixture
async def headers(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    return await admin_headers(app, client)


async def test_secret_is_shown_once_and_stored_only_as_a_digest(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    answer = await client.post("/v1/admin/clients", json=WEB, headers=headers)
    assert answer.status_code == 201
    assert answer.headers["cache-control"] == "no-store"
    created = answer.json()
    assert CLIENT_ID.match(created["client_id"])
    assert SECRET.match(created["client_secret"])
    # RFC 7591 section 2 defaults.
    assert created["grant_types"] == ["authorization_code"]
    assert created["response_types"] == ["code"]
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    assert created["scope"] == "openid"
    assert created["require_pkce"] is True
    assert created["client_secret_expires_at"] == 0
    assert isinstance(created["client_id_issued_at"], int)
    assert created["secret_rotated_at"] is None
    secret = created.pop("client_secret")
    created.pop("client_secret_expires_at")
    fetched = await client.get(f"/v1/admin/clients/{created['client_id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == created
    listed = await client.get("/v1/admin/clients", params={"limit": 100}, headers=headers)
    assert secret not in listed.text
    assert secret not in fetched.text
    row = await stored_row(settings, created["client_id"])
    ring = KeyRing.from_strings([TEST_SECRET])
    # A keyed digest under its own label: not the secret, not an API-key digest of it.
    assert row.secret_digest == Digester(ring, "oauth-client-secret").digest(secret)
    assert row.secret_digest != Digester(ring, "api-key").digest(secret)
    assert secret not in str(tuple(row))


async def test_public_client_rules(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    created = await register(client, headers, **NATIVE)
    assert "client_secret" not in created
    assert created["require_pkce"] is True
    assert (await stored_row(settings, created["client_id"])).secret_digest is None
    refused = {
        "require_pkce false": ({"require_pkce": False}, "require_pkce"),
        "client_credentials": (
            {"grant_types": ["authorization_code", "client_credentials"]},
            "grant_types",
        ),
    }
    for case, (change, field) in refused.items():
        answer = await client.post("/v1/admin/clients", json={**NATIVE, **change}, headers=headers)
        assert answer.status_code == 422, case
        assert answer.json()["code"] == "invalid_client_metadata", case
        assert answer.json()["errors"][0]["field"] == field, case
    path = f"/v1/admin/clients/{created['client_id']}"
    rotate = await client.post(f"{path}/secret", headers=headers)
    assert (rotate.status_code, rotate.json()["code"]) == (422, "invalid_client_metadata")
    patched = await client.patch(path, json={"require_pkce": False}, headers=headers)
    assert patched.status_code == 422
    spa = await register(client, headers, token_endpoint_auth_method="none")
    to_confidential = await client.patch(
        f"/v1/admin/clients/{spa['client_id']}",
        json={"token_endpoint_auth_method": "client_secret_post"},
        headers=headers,
    )
    assert to_confidential.status_code == 422
    assert to_confidential.json()["errors"][0]["field"] == "token_endpoint_auth_method"
    web = await register(client, headers)
    to_public = await client.patch(
        f"/v1/admin/clients/{web['client_id']}",
        json={"token_endpoint_auth_method": "none"},
        headers=headers,
    )
    assert to_public.status_code == 422
    assert to_public.json()["errors"][0]["field"] == "token_endpoint_auth_method"
    # A private-use scheme is for native (public) clients only.
    confidential_native = await client.post(
        "/v1/admin/clients",
        json={**WEB, "redirect_uris": ["com.example.app:/callback"]},
        headers=headers,
    )
    assert confidential_native.json()["code"] == "invalid_redirect_uri"


BAD_REDIRECTS = {
    "fragment": "https://app.example.com/cb#frag",
    "empty fragment": "https://app.example.com/cb#",
    "userinfo": "https://good.example.com@evil.example.com/cb",
    "userinfo only user": "https://good@evil/cb",
    "wildcard host": "https://*.example.com/cb",
    "wildcard path": "https://app.example.com/*",
    "http not loopback": "http://app.example.com/cb",
    "http localhost": "http://localhost/cb",
    "https localhost": "https://localhost:8443/cb",
    "loopback lookalike": "http://127.0.0.1.evil.example.com/cb",
    "relative": "/callback",
    "no scheme": "app.example.com/cb",
    "javascript": "javascript:alert(1)",
    "data": "data:text/html,hi",
    "space": "https://app.example.com/c b",
    "backslash": "https://app.example.com\\@evil.example.com/",
    "non ascii": "https://exämple.com/cb",
    "bad percent": "https://app.example.com/%zz",
    "no host": "https:///cb",
    "port zero": "https://app.example.com:0/cb",
    "port too big": "https://app.example.com:70000/cb",
    "empty port": "https://app.example.com:/cb",
    "upper-case scheme": "HTTPS://app.example.com/cb",
    "upper-case host": "https://App.example.com/cb",
    "private scheme for confidential": "com.example.app:/cb",
}


async def test_redirect_uri_mutants_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for case, uri in BAD_REDIRECTS.items():
        for field in ("redirect_uris", "post_logout_redirect_uris"):
            body = {**WEB, field: [uri]}
            answer = await client.post("/v1/admin/clients", json=body, headers=headers)
            assert answer.status_code == 422, (case, field, answer.text)
            problem = answer.json()
            assert problem["code"] == "invalid_redirect_uri", (case, problem)
            assert problem["errors"][0]["field"] == f"{field}.0", (case, problem)


async def test_good_redirect_uris_are_stored_exactly(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    uris = [
        "https://app.example.com/cb",
        # Exact-match comparison (RFC 9700 section 4.1.3): a trailing slash is another URI.
        "https://app.example.com/cb/",
        "https://app.example.com:8443/cb?tenant=a%20b",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:51004/cb",
        "http://[::1]:8080/cb",
        "https://[2001:db8::1]/cb",
    ]
    created = await register(
        client, headers, redirect_uris=uris, post_logout_redirect_uris=uris[:2]
    )
    assert created["redirect_uris"] == uris
    assert created["post_logout_redirect_uris"] == uris[:2]
    native = await register(
        client,
        headers,
        **{**NATIVE, "redirect_uris": ["com.example.app:/cb", "org.example.app.dev:/a/b"]},
    )
    assert native["redirect_uris"] == ["com.example.app:/cb", "org.example.app.dev:/a/b"]
    for bad in ("com.example.app://cb", "myapp:/cb", "com.example.app:cb"):
        answer = await client.post(
            "/v1/admin/clients", json={**NATIVE, "redirect_uris": [bad]}, headers=headers
        )
        assert answer.json()["code"] == "invalid_redirect_uri", bad
    twice = await client.post(
        "/v1/admin/clients", json={**WEB, "redirect_uris": [uris[0], uris[0]]}, headers=headers
    )
    assert (twice.status_code, twice.json()["code"]) == (422, "invalid_client_metadata")
    none = await client.post(
        "/v1/admin/clients", json={**WEB, "redirect_uris": []}, headers=headers
    )
    assert none.json()["errors"][0]["field"] == "redirect_uris"


async def test_cors_origins_scope_and_grants(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    origins = ["https://app.example.com", "https://app.example.com:8443", "http://127.0.0.1:3000"]
    created = await register(
        client, headers, allowed_cors_origins=origins, scope="profile openid me:read openid"
    )
    assert created["allowed_cors_origins"] == origins
    assert created["scope"] == "me:read openid profile"
    for origin in (
        "https://app.example.com/",
        "https://app.example.com/path",
        "http://app.example.com",
        "https://*.example.com",
        "https://App.example.com",
        "https://app.example.com:443",
        "http://localhost:3000",
        "null",
    ):
        answer = await client.post(
            "/v1/admin/clients", json={**WEB, "allowed_cors_origins": [origin]}, headers=headers
        )
        assert answer.status_code == 422, origin
        assert answer.json()["code"] == "invalid_redirect_uri", origin
    unknown = await client.post(
        "/v1/admin/clients", json={**WEB, "scope": "openid admin everything"}, headers=headers
    )
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_scope")
    assert {e["message"] for e in unknown.json()["errors"]} == {
        "unknown: admin",
        "unknown: everything",
    }
    spaced = await client.post(
        "/v1/admin/clients", json={**WEB, "scope": "openid  profile"}, headers=headers
    )
    assert spaced.json()["code"] == "invalid_client_metadata"
    machine = await register(
        client,
        headers,
        client_name="Batch job",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scope="users:read",
    )
    assert machine["response_types"] == []
    refused = [
        {"grant_types": ["refresh_token"]},
        {"grant_types": ["client_credentials"], "response_types": ["code"]},
        {"response_types": []},
        {"grant_types": ["implicit"]},
        {"response_types": ["token"]},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"client_name": "  "},
        {"extra": 1},
        {"redirect_uris": ["https://a.example.com/" + "x" * 2000]},
        {"redirect_uris": [f"https://a.example.com/{n}" for n in range(21)]},
    ]
    for change in refused:
        answer = await client.post("/v1/admin/clients", json={**WEB, **change}, headers=headers)
        assert answer.status_code == 422, (change, answer.text)


async def test_list_paginates_with_a_cursor(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    mine = [(await register(client, headers))["client_id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/admin/clients", params=params, headers=headers)
        assert page.status_code == 200
        assert len(page.json()["items"]) <= 2
        seen += [item["client_id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    # The shared database may hold other tests' clients; ours come oldest first, in order.
    assert [client_id for client_id in seen if client_id in mine] == mine
    for bad in ("not-a-cursor!", base64.urlsafe_b64encode(b"2026-01-01|x").decode()):
        tampered = await client.get("/v1/admin/clients", params={"cursor": bad}, headers=headers)
        assert tampered.status_code == 422


async def test_update_delete_and_audit(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await register(client, headers)
    client_id, secret = created["client_id"], created["client_secret"]
    path = f"/v1/admin/clients/{client_id}"
    patched = await client.patch(
        path,
        json={
            "client_name": "Renamed",
            "redirect_uris": ["https://app.example.com/new"],
            "token_endpoint_auth_method": "client_secret_post",
        },
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["client_name"] == "Renamed"
    assert body["redirect_uris"] == ["https://app.example.com/new"]
    assert body["scope"] == created["scope"]
    assert body["updated_at"] >= created["updated_at"]
    assert "client_secret" not in body
    # The secret survives a metadata change.
    assert await authenticate(app, client_id, secret, "client_secret_post")
    # Dropping authorization_code derives response_types again; null is refused.
    machine = await client.patch(
        path, json={"grant_types": ["client_credentials"], "redirect_uris": []}, headers=headers
    )
    assert machine.json()["response_types"] == []
    null = await client.patch(path, json={"scope": None}, headers=headers)
    assert (null.status_code, null.json()["code"]) == (422, "invalid_request")
    bad = await client.patch(
        path, json={"redirect_uris": ["http://evil.example/cb"]}, headers=headers
    )
    assert bad.status_code == 422
    rotated = await client.post(f"{path}/secret", headers=headers)
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["client_secret"]
    assert SECRET.match(new_secret)
    assert new_secret != secret
    assert rotated.json()["secret_rotated_at"] is not None
    deleted = await client.delete(path, headers=headers)
    assert deleted.status_code == 204
    for method in ("GET", "DELETE", "PATCH"):
        gone = await client.request(method, path, json={"client_name": "x"}, headers=headers)
        assert (gone.status_code, gone.json()["code"]) == (404, "not_found"), method
    assert (await client.post(f"{path}/secret", headers=headers)).status_code == 404
    for odd in ("x", "%2e%2e", "a" * 64):
        assert (await client.get(f"/v1/admin/clients/{odd}", headers=headers)).status_code == 404
    events = []
    for kind in ("created", "updated", "secret_rotated", "deleted"):
        answer = await client.get(
            "/v1/admin/audit-events", params={"type": f"client.{kind}"}, headers=headers
        )
        assert answer.status_code == 200
        events += [e for e in answer.json()["items"] if e["data"]["client_id"] == client_id]
        assert secret not in answer.text
        assert new_secret not in answer.text
    assert sorted(e["type"] for e in events) == [
        "client.created",
        "client.deleted",
        "client.secret_rotated",
        "client.updated",
        "client.updated",
    ]
    updated = [e for e in events if e["type"] == "client.updated"]
    assert updated[-1]["data"]["fields"] == [
        "client_name",
        "redirect_uris",
        "token_endpoint_auth_method",
    ]


async def authenticate(
    app: FastAPI,
    client_id: str,
    secret: str | None,
    method: str,
    where: ClientInfo = HERE,
) -> bool:
    try:
        found = await app.state.services.clients.authenticate(
            client_id=client_id, client_secret=secret, method=method, client=where
        )
    except InvalidClient as error:
        refused = error
    else:
        assert found.client_id == client_id
        return True
    assert (refused.code, refused.status) == ("invalid_client", 401)
    return False


async def test_authenticate(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    basic = await register(client, headers)
    post = await register(client, headers, token_endpoint_auth_method="client_secret_post")
    public = await register(client, headers, **NATIVE)
    cid, secret = basic["client_id"], basic["client_secret"]
    assert await authenticate(app, cid, secret, "client_secret_basic")
    assert await authenticate(app, post["client_id"], post["client_secret"], "client_secret_post")
    assert await authenticate(app, public["client_id"], None, "none")
    refused = {
        "wrong secret": (
            cid,
            secret[:-1] + ("A" if secret[-1] != "A" else "B"),
            "client_secret_basic",
        ),
        "no secret": (cid, None, "client_secret_basic"),
        "empty secret": (cid, "", "client_secret_basic"),
        "method not registered": (cid, secret, "client_secret_post"),
        "confidential as public": (cid, None, "none"),
        "public with a secret": (public["client_id"], "anything", "none"),
        "public as basic": (public["client_id"], "", "client_secret_basic"),
        "post client via basic": (post["client_id"], post["client_secret"], "client_secret_basic"),
        "unknown client": ("A" * 22, secret, "client_secret_basic"),
        "malformed id": ("not a client id", secret, "client_secret_basic"),
        "unknown method": (cid, secret, "private_key_jwt"),
    }
    for case, (client_id, presented, method) in refused.items():
        assert not await authenticate(app, client_id, presented, method), case
    # Rotation: the old secret stops working at once, the new one works.
    rotated = await client.post(f"/v1/admin/clients/{cid}/secret", headers=headers)
    new_secret = rotated.json()["client_secret"]
    assert not await authenticate(app, cid, secret, "client_secret_basic")
    assert await authenticate(app, cid, new_secret, "client_secret_basic")
    failures = await client.get(
        "/v1/admin/audit-events",
        params={"type": "client.authentication_failed", "limit": 200},
        headers=headers,
    )
    mine = [e for e in failures.json()["items"] if e["data"].get("client_id") == cid]
    assert mine
    assert all(e["ip"] == HERE.ip for e in mine)
    assert secret not in failures.text


async def test_unknown_client_does_equal_work(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown client_id costs the same digest comparisons as a wrong secret."""
    created = await register(client, headers)
    calls: list[int] = []
    original = clients_module.constant_time_equals

    def counting(a: str | bytes, b: str | bytes) -> bool:
        calls[-1] += 1
        return original(a, b)

    monkeypatch.setattr(clients_module, "constant_time_equals", counting)
    answers = []
    for client_id in (created["client_id"], "B" * 22, "?"):
        calls.append(0)
        try:
            await app.state.services.clients.authenticate(
                client_id=client_id,
                client_secret="C" * 43,
                method="client_secret_basic",
                client=HERE,
            )
        except InvalidClient as refused:
            answers.append((refused.code, refused.detail, refused.errors))
    assert calls[0] == calls[1] == calls[2] >= 1
    assert answers[0] == answers[1] == answers[2]


async def test_failures_are_throttled_per_client_and_ip(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(limit_failures_per_account_ip=3))
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        headers = await admin_headers(app, client)
        first = await register(client, headers)
        other = await register(client, headers)
        cid = first["client_id"]
        for _ in range(3):
            assert not await authenticate(app, cid, "wrong", "client_secret_basic")
        with pytest.raises(RateLimited):
            # Over the limit: refused before any check, even with the right secret.
            await app.state.services.clients.authenticate(
                client_id=cid,
                client_secret=first["client_secret"],
                method="client_secret_basic",
                client=HERE,
            )
        # Another client from the same address, and this client from elsewhere, still work.
        assert await authenticate(
            app, other["client_id"], other["client_secret"], "client_secret_basic"
        )
        elsewhere = ClientInfo(ip="198.51.100.9")
        assert await authenticate(
            app, cid, first["client_secret"], "client_secret_basic", elsewhere
        )


async def test_basic_credentials_are_form_decoded() -> None:
    """RFC 6749 section 2.3.1: id and secret are form-urlencoded inside HTTP Basic."""
    encoded = base64.b64encode(b"my%3Aclient:s3cr%2Bt+with%20space").decode()
    assert decode_basic_credentials(encoded) == ("my:client", "s3cr+t with space")
    plain = base64.b64encode(b"abc:def:ghi").decode()
    assert decode_basic_credentials(plain) == ("abc", "def:ghi")
    for bad in (
        "not base64!",
        base64.b64encode(b"no-colon").decode(),
        base64.b64encode(b"\xff:x").decode(),
    ):
        with pytest.raises(InvalidClient):
            decode_basic_credentials(bad)


async def test_client_id_collision_draws_again_then_gives_up(
    client: httpx.AsyncClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = (await register(client, headers))["client_id"]
    fresh = clients_module.new_client_id()
    draws = iter([taken, fresh])
    monkeypatch.setattr(clients_module, "new_client_id", lambda: next(draws))
    assert (await register(client, headers))["client_id"] == fresh
    monkeypatch.setattr(clients_module, "new_client_id", lambda: taken)
    answer = await client.post("/v1/admin/clients", json=WEB, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (503, "service_unavailable")


INJECTIONS = [
    "' OR 1=1--",
    "x\r\nX-Injected: yes",
    "abc\x00def",
    "{{7*'7'}}",
    "<script>alert(1)</script>",
    "\u202egnp.exe",
    "A" * 5000,
]


async def test_injection_strings_are_refused_or_stored_verbatim(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """As an administrator (the security suite's plain user stops at 403): never a 5xx."""
    for payload in INJECTIONS:
        for field, value in (
            ("client_name", payload),
            ("scope", payload),
            ("redirect_uris", [f"https://app.example.com/{payload}"]),
            ("allowed_cors_origins", [payload]),
        ):
            answer = await client.post(
                "/v1/admin/clients", json={**WEB, field: value}, headers=headers
            )
            assert answer.status_code < 500, (field, payload)
            if answer.status_code == 201:
                assert field == "client_name", (field, payload)
                assert answer.json()["client_name"] == payload
            else:
                assert answer.status_code == 422, (field, payload, answer.text)


async def test_plain_users_cannot_manage_clients(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    answer = await client.post("/v1/admin/clients", json=WEB, headers=bearer(user["access_token"]))
    assert (answer.status_code, answer.json()["code"]) == (403, "permission_denied")


async def test_id_token_algorithm_is_registered_per_client(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # OpenID Connect Registration 1.0 section 2: RS256 when the client names none.
    assert (await register(client, headers))["id_token_signed_response_alg"] == "RS256"
    chosen = await register(client, headers, id_token_signed_response_alg="ES256")
    assert chosen["id_token_signed_response_alg"] == "ES256"
    # EdDSA is an algorithm Keyturn knows, but not one of KEYTURN_ID_TOKEN_ALGS here.
    for value, code in (("EdDSA", "invalid_client_metadata"), ("none", "invalid_request")):
        answer = await client.post(
            "/v1/admin/clients",
            json={**WEB, "id_token_signed_response_alg": value},
            headers=headers,
        )
        assert (answer.status_code, answer.json()["code"]) == (422, code), answer.text
    patched = await client.patch(
        f"/v1/admin/clients/{chosen['client_id']}",
        json={"id_token_signed_response_alg": "RS256"},
        headers=headers,
    )
    assert patched.json()["id_token_signed_response_alg"] == "RS256", patched.text
