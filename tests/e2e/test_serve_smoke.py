"""Smoke suite: ``keyturn serve`` with DEFAULT settings (DESIGN.md section 8).

Only ``KEYTURN_DATA_DIR`` and ``KEYTURN_PORT`` are set: real argon2 cost (m=19456, t=2),
default limits, and dev mode generating its secret key into the data dir. Tokens are
verified with PyJWT, a library independent of the one that signs them.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
import uuid
from typing import Any

import jwt
import pytest

from e2e.processes import Server
from helpers import PASSWORD, bearer, new_email

pytestmark = pytest.mark.slow

ACCESS_TOKEN_CLAIMS = {
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "client_id",
    "scope",
    "roles",
    "auth_time",
    "amr",
}


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _tamper_one_payload_byte(token: str) -> str:
    """Changes one byte of the payload (inside the ``jti`` value) and re-encodes it.

    The payload stays valid JSON, so only the signature can catch the change.
    """
    header, payload, signature = token.split(".")
    raw = bytearray(_b64url_decode(payload))
    claims = json.loads(raw)
    position = raw.index(claims["jti"].encode())
    raw[position] = ord("0") if raw[position] != ord("0") else ord("1")
    assert json.loads(raw)["jti"] != claims["jti"]
    return f"{header}.{_b64url_encode(bytes(raw))}.{signature}"


def _verify(server: Server, token: str) -> dict[str, Any]:
    keys = jwt.PyJWKClient(f"{server.base_url}/.well-known/jwks.json")
    signing_key = keys.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience="keyturn",
        # KEYTURN_ISSUER unset: the dev issuer is the listener, port included (issue 13).
        issuer=server.base_url,
    )
    return claims


def test_default_settings_full_flow(server: Server) -> None:
    email = new_email()
    request_ids: list[str] = []
    with server.client() as http:
        signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text
        assert signup.json() == {"status": "accepted", "verification_required": False}

        login = http.post(
            "/v1/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Request-ID": "smoke-login-0001"},
        )
        assert login.status_code == 200, login.text
        assert login.headers["x-request-id"] == "smoke-login-0001"
        assert login.headers["cache-control"] == "no-store"
        tokens = login.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 600
        user = tokens["user"]
        assert user["email"] == email
        assert user["roles"] == []

        me = http.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json() == user

        # An independent library verifies the token against the published JWKS.
        assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
        claims = _verify(server, tokens["access_token"])
        assert set(claims) >= ACCESS_TOKEN_CLAIMS
        assert claims["sub"] == user["id"]
        assert claims["client_id"] == claims["aud"] == "keyturn"
        assert claims["iss"] == server.base_url
        assert claims["exp"] - claims["iat"] == 600
        assert "pwd" in claims["amr"]
        uuid.UUID(claims["sid"])

        tampered = _tamper_one_payload_byte(tokens["access_token"])
        with pytest.raises(jwt.InvalidSignatureError):
            _verify(server, tampered)
        refused = http.get("/v1/me", headers=bearer(tampered))
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_token"

        refreshed = http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        pair = refreshed.json()
        assert pair["refresh_token"] != tokens["refresh_token"]
        assert pair["access_token"] != tokens["access_token"]
        new_claims = _verify(server, pair["access_token"])
        assert new_claims["sid"] == claims["sid"]

        sessions = http.get("/v1/me/sessions", headers=bearer(pair["access_token"]))
        assert sessions.status_code == 200, sessions.text
        items = sessions.json()["items"]
        assert [(item["id"], item["current"]) for item in items] == [(claims["sid"], True)]

        logout = http.post("/v1/auth/logout", headers=bearer(pair["access_token"]))
        assert logout.status_code == 204, logout.text
        request_ids.append(logout.headers["x-request-id"])
        after = http.get("/v1/me", headers=bearer(pair["access_token"]))
        assert after.status_code == 401
        assert after.json()["code"] == "session_revoked"
        old = http.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert old.status_code == 401

        # The stored hash carries the OWASP parameters (read-only while the server runs).
        database = server.data_dir / "keyturn.db"
        assert database.is_file()
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
            row = connection.execute(
                "SELECT password_hash FROM users WHERE email = ?", (email,)
            ).fetchone()
        assert row is not None
        assert row[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$"), row[0]

    server.assert_stopped_cleanly()

    # Dev mode generated its secret key into the data dir, readable by the owner only.
    secret = server.data_dir / "secret_key"
    assert secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text(encoding="ascii").strip()) >= 32

    _check_logs(
        server,
        secrets=[
            PASSWORD,
            tokens["access_token"],
            tokens["refresh_token"],
            pair["access_token"],
            pair["refresh_token"],
            secret.read_text(encoding="ascii").strip(),
        ],
        request_ids=["smoke-login-0001", *request_ids],
    )


def _check_logs(server: Server, *, secrets: list[str], request_ids: list[str]) -> None:
    """Every stdout line is JSON; lines while serving carry a request id; no secret leaks."""
    lines = [line for line in server.stdout().splitlines() if line.strip()]
    assert lines, server.output()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"log line is not JSON: {line!r}")
        for secret in secrets:
            assert secret not in line, f"a secret leaked into the log: {line!r}"
    events = [record.get("event") for record in records]
    start = events.index("Application startup complete.")
    end = events.index("Shutting down")
    serving = records[start + 1 : end]
    # Lines logged while serving belong to a request or name their background task
    # (Uvicorn's "running on" banner aside).
    serving = [record for record in serving if not str(record["event"]).startswith("Uvicorn")]
    assert serving, server.output()
    for record in serving:
        owner = record.get("request_id") or record.get("task")
        assert owner, f"log line without request_id or task: {record}"
    access = [record for record in serving if record.get("event") == "request"]
    logged_ids = {record["request_id"] for record in access}
    for request_id in request_ids:
        assert request_id in logged_ids
    assert {"/v1/auth/login", "/v1/me", "/v1/auth/refresh", "/v1/auth/logout"} <= {
        record["path"] for record in access
    }
