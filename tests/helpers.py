"""Helpers shared by the HTTP tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"
# Every process on the shared test database seals signing keys under this one key.
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def signup_login(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    """Signs a fresh user up and logs in; returns the token response plus ``email``."""
    email = email or new_email()
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": password})
    assert answer.status_code == 202, answer.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    body: dict[str, Any] = login.json()
    body["email"] = email
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
