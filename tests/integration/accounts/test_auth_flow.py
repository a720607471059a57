"""The whole first-party flow over HTTP: signup, login, me, refresh, sessions, logout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from helpers import PASSWORD, bearer, new_email, signup_login

pytestmark = pytest.mark.anyio


async def test_full_flow(client: httpx.AsyncClient) -> None:
    email = new_email()
    signup = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert signup.status_code == 202
    assert signup.json() == {"status": "accepted", "verification_required": False}

    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    tokens = login.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 600
    assert tokens["user"]["email"] == email
    assert tokens["user"]["name"] == "Ada"
    assert login.headers["cache-control"] == "no-store"

    me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == tokens["user"]

    patched = await client.patch(
        "/v1/me", json={"name": "Ada L."}, headers=bearer(tokens["access_token"])
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "Ada L."

    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    pair = refreshed.json()
    assert pair["refresh_token"] != tokens["refresh_token"]
    assert pair["access_token"] != tokens["access_token"]

    sessions = await client.get("/v1/me/sessions", headers=bearer(pair["access_token"]))
    assert sessions.status_code == 200
    items = sessions.json()["items"]
    assert len(items) == 1
    assert items[0]["current"] is True
    assert set(items[0]) == {"id", "created_at", "last_seen_at", "ip", "user_agent", "current"}

    logout = await client.post("/v1/auth/logout", headers=bearer(pair["access_token"]))
    assert logout.status_code == 204
    after = await client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert after.status_code == 401
    assert after.json()["code"] == "session_revoked"
    # The older access token of the same session dies with it.
    old = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert old.status_code == 401
    dead = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert dead.status_code == 401
    assert dead.json()["code"] == "invalid_refresh_token"


async def test_signup_is_enumeration_safe(client: httpx.AsyncClient) -> None:
    email = new_email()
    first = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    again = await client.post(
        "/v1/auth/signup", json={"email": email.upper(), "password": "another password 123"}
    )
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    # The existing account is untouched: its password still works, the new one does not.
    ok = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200
    hijack = await client.post(
        "/v1/auth/login", json={"email": email, "password": "another password 123"}
    )
    assert hijack.status_code == 401


async def test_wrong_password_and_unknown_user_answer_alike(client: httpx.AsyncClient) -> None:
    known = await signup_login(client)
    wrong = await client.post(
        "/v1/auth/login", json={"email": known["email"], "password": "not the password!"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": new_email(), "password": "not the password!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"


async def test_email_lookup_ignores_case(client: httpx.AsyncClient) -> None:
    tokens = await signup_login(client)
    upper = await client.post(
        "/v1/auth/login", json={"email": tokens["email"].upper(), "password": PASSWORD}
    )
    assert upper.status_code == 200
    assert upper.json()["user"]["id"] == tokens["user"]["id"]


async def test_sessions_end_one_and_others(client: httpx.AsyncClient) -> None:
    first = await signup_login(client)
    second = (
        await client.post("/v1/auth/login", json={"email": first["email"], "password": PASSWORD})
    ).json()
    third = (
        await client.post("/v1/auth/login", json={"email": first["email"], "password": PASSWORD})
    ).json()
    listed = await client.get("/v1/me/sessions", headers=bearer(first["access_token"]))
    assert len(listed.json()["items"]) == 3

    sid_second = _sid(listed.json()["items"], current=False, exclude=None)
    ended = await client.delete(
        f"/v1/me/sessions/{sid_second}", headers=bearer(first["access_token"])
    )
    assert ended.status_code == 204
    again = await client.delete(
        f"/v1/me/sessions/{sid_second}", headers=bearer(first["access_token"])
    )
    assert again.status_code == 404

    others = await client.delete("/v1/me/sessions", headers=bearer(first["access_token"]))
    assert others.status_code == 204
    remaining = (await client.get("/v1/me/sessions", headers=bearer(first["access_token"]))).json()[
        "items"
    ]
    assert [item["current"] for item in remaining] == [True]
    for tokens in (second, third):
        me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401


async def test_cannot_end_someone_elses_session(client: httpx.AsyncClient) -> None:
    alice = await signup_login(client)
    bob = await signup_login(client)
    bob_sid = (await client.get("/v1/me/sessions", headers=bearer(bob["access_token"]))).json()[
        "items"
    ][0]["id"]
    attempt = await client.delete(
        f"/v1/me/sessions/{bob_sid}", headers=bearer(alice["access_token"])
    )
    assert attempt.status_code == 404
    still = await client.get("/v1/me", headers=bearer(bob["access_token"]))
    assert still.status_code == 200


async def test_session_pagination(client: httpx.AsyncClient) -> None:
    first = await signup_login(client)
    for _ in range(4):
        await client.post("/v1/auth/login", json={"email": first["email"], "password": PASSWORD})
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            "/v1/me/sessions", params=params, headers=bearer(first["access_token"])
        )
        assert page.status_code == 200
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    bad = await client.get(
        "/v1/me/sessions", params={"cursor": "!!"}, headers=bearer(first["access_token"])
    )
    assert bad.status_code == 422


async def test_password_change_ends_other_sessions(client: httpx.AsyncClient) -> None:
    first = await signup_login(client)
    other = (
        await client.post("/v1/auth/login", json={"email": first["email"], "password": PASSWORD})
    ).json()
    wrong = await client.post(
        "/v1/me/password",
        json={"current_password": "wrong password!!", "new_password": "brand new password 1"},
        headers=bearer(first["access_token"]),
    )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "invalid_current_password"

    changed = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "brand new password 1"},
        headers=bearer(first["access_token"]),
    )
    assert changed.status_code == 204
    assert (await client.get("/v1/me", headers=bearer(first["access_token"]))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(other["access_token"]))).status_code == 401
    old = await client.post("/v1/auth/login", json={"email": first["email"], "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post(
        "/v1/auth/login", json={"email": first["email"], "password": "brand new password 1"}
    )
    assert new.status_code == 200


async def test_health_ready_metrics_jwks(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    await signup_login(client)
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'keyturn_logins_total{outcome="success"}' in metrics.text
    assert "keyturn_http_request_duration_seconds_bucket" in metrics.text
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert "max-age=" in jwks.headers["cache-control"]
    keys = jwks.json()["keys"]
    assert keys
    assert all("d" not in key for key in keys)


async def test_docs_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN address anywhere
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        answer = await client.get(f"/docs/assets/{asset}")
        assert answer.status_code == 200
        assert len(answer.content) > 0
    assert (await client.get("/docs/assets/../../secret_key")).status_code == 404
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/v1/auth/login" in spec.json()["paths"]


def _sid(items: list[dict[str, object]], *, current: bool, exclude: str | None) -> str:
    for item in items:
        if item["current"] is current and item["id"] != exclude:
            return str(item["id"])
    raise AssertionError("no such session")


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient) -> None:
    email = new_email()
    await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Grace"}
    )
    tokens = (
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    kept = await client.patch("/v1/me", json={}, headers=bearer(tokens["access_token"]))
    assert kept.status_code == 200
    assert kept.json()["name"] == "Grace"
    cleared = await client.patch(
        "/v1/me", json={"name": None}, headers=bearer(tokens["access_token"])
    )
    assert cleared.json()["name"] is None


async def test_body_over_the_cap_is_a_problem_whether_declared_or_streamed(
    client: httpx.AsyncClient,
) -> None:
    big = b'{"email": "' + b"a" * 70_000 + b'"}'
    declared = await client.post(
        "/v1/auth/login", content=big, headers={"content-type": "application/json"}
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = await client.post(
        "/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.headers["content-type"] == "application/problem+json; charset=utf-8"
        assert answer.json()["code"] == "payload_too_large"
        assert "x-request-id" in answer.headers


@pytest.mark.parametrize("password", ["password123", "QwertyUIOP", "１２３４５６７８９０"])
async def test_common_passwords_are_refused(client: httpx.AsyncClient, password: str) -> None:
    """v5.0.0-6.2.4: the 30,000 most common passwords (zxcvbn's list), case and NFKC folded."""
    email = new_email()
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": password})
    assert answer.status_code == 422
    assert answer.json()["code"] == "password_too_common"
    assert answer.json()["errors"][0]["field"] == "password"
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 401  # nothing was created
