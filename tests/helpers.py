"""Helpers shared by the HTTP tests."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from keyturn.app import create_app
from keyturn.config import Settings
from smtp_server import SmtpServer

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


async def admin_login(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh account holding the built-in admin role, signed in through the API.

    Returns the token response plus ``email``.
    """
    email = new_email()
    await app.state.services.users.create_admin(email, PASSWORD)
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["user"]["roles"] == ["admin"]
    body["email"] = email
    return body


async def admin_headers(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    """The Authorization header of a fresh admin (``admin_login``)."""
    return bearer((await admin_login(app, client))["access_token"])


async def create_role(
    client: httpx.AsyncClient, admin: dict[str, str], permissions: list[str], prefix: str = "role"
) -> str:
    """A fresh role holding ``permissions``, made by ``admin`` (its headers); its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    answer = await client.post(
        "/v1/admin/roles", json={"name": name, "permissions": permissions}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    return name


async def grant_role(
    client: httpx.AsyncClient, admin: dict[str, str], user_id: object, role: str
) -> None:
    """``admin`` (its headers) gives the user ``role``."""
    answer = await client.put(f"/v1/admin/users/{user_id}/roles/{role}", headers=admin)
    assert answer.status_code == 204, answer.text


async def mails_to(
    smtp: SmtpServer, address: str, *, count: int = 1, within: float = 30.0
) -> list[EmailMessage]:
    """Waits (without blocking the loop the in-process outbox worker runs on) for mail.

    ``within`` is generous on purpose: it returns as soon as the mail is there, and a busy
    CI machine (two pytest workers on two cores) can delay the outbox worker by seconds.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = smtp.messages_to(address)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert len(found) >= count, (
        f"expected {count} mail(s) to {address}, got {[m['Subject'] for m in found]}"
    )
    return found


async def mail_titled(
    smtp: SmtpServer, address: str, subject: str, *, count: int = 1
) -> EmailMessage:
    """The newest mail to ``address`` whose subject contains ``subject``, once ``count`` of
    them arrived (waits, bounded)."""
    deadline = asyncio.get_running_loop().time() + 30.0
    while True:
        found = [
            message for message in smtp.messages_to(address) if subject in str(message["Subject"])
        ]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert len(found) >= count, f"{len(found)} of {count} mails {subject!r} to {address}"
    return found[-1]


def lifespan(application: Any) -> LifespanManager:
    """Run ``application``'s lifespan, with room for a busy machine.

    asgi-lifespan gives startup 5 s by default; a first start generates a signing key per
    algorithm (RSA included), which two pytest workers on two cores can push past that.
    """
    return LifespanManager(application, startup_timeout=60, shutdown_timeout=60)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app for ``settings`` behind an httpx client, lifespan and all."""
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


class Peers:
    """Clients of one running app, each with a socket peer of its own (its own network)."""

    def __init__(self, app: FastAPI, default_peer: str) -> None:
        self.app = app
        self._default_peer = default_peer
        self.clients: list[httpx.AsyncClient] = []

    def __call__(
        self, peer: str | None = None, base_url: str = "http://testserver"
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(peer or self._default_peer, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.clients.append(client)
        return client


@asynccontextmanager
async def serving(
    settings: Settings, *, default_peer: str = "203.0.113.66"
) -> AsyncIterator[Peers]:
    """The app for ``settings``, lifespan and all; ``peers(ip)`` opens a client from ``ip``.

    Every client it opened is closed on the way out.
    """
    peers = Peers(create_app(settings), default_peer)
    async with lifespan(peers.app):
        try:
            yield peers
        finally:
            for client in peers.clients:
                await client.aclose()


# -- hosted pages (/ui/) --------------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token of the (first) form on a hosted page."""
    found = _CSRF_INPUT.search(html)
    assert found is not None, "no csrf_token field on the page"
    return found.group(1)


async def submit(
    client: httpx.AsyncClient,
    page: str,
    fields: dict[str, str],
    *,
    action: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GETs ``page`` (which sets the CSRF cookie), then POSTs its form with ``fields``."""
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text
    target = action or page.split("?", 1)[0]
    return await client.post(
        target, data={"csrf_token": csrf_from(shown.text), **fields}, headers=headers
    )


async def ui_login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    """Signs in through the /ui/login form; the client keeps the session cookie."""
    return await submit(client, "/ui/login", {"email": email, "password": password, **extra})


async def api_login_status(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> int:
    """The status of ``POST /v1/auth/login`` (the API pathway next to the page's)."""
    answer = await client.post("/v1/auth/login", json={"email": email, "password": password})
    return answer.status_code
