"""The lean lane takes a hot route's GET and POST past the layers that would only pass
them on, and leaves everything else to the full stack (``keyturn.api.lean.lane``).

What it answers is compared with the framework routes in ``test_lean_edge_equality.py``;
these tests show which way each request went, by the layers it met: the lane skips
HEAD-as-GET, the OAuth preflight layer and the router, and still meets the edge (client
address, request context, CORS, body cap) and the exception handlers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Router

from helpers import bearer, signup_login
from keyturn.api.http.cors import OAuthCorsMiddleware
from keyturn.api.http.hardening import ClientAddressMiddleware
from keyturn.api.http.head_requests import HeadAsGetMiddleware
from keyturn.api.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from keyturn.config import Settings

pytestmark = pytest.mark.anyio

LAYERS = (
    ClientAddressMiddleware,
    RequestContextMiddleware,
    OAuthCorsMiddleware,
    CORSMiddleware,
    BodyLimitMiddleware,
    HeadAsGetMiddleware,
    Router,
)
EDGE = {"ClientAddressMiddleware", "RequestContextMiddleware", "CORSMiddleware"}
SKIPPED = {"OAuthCorsMiddleware", "HeadAsGetMiddleware", "Router"}


@pytest.fixture
def met(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the layers (of ``LAYERS``; FastAPI's router as "Router") each request
    passed through."""
    names: list[str] = []
    for layer in LAYERS:

        async def spy(
            self: Any,
            scope: Any,
            receive: Any,
            send: Any,
            *,
            _real: Any = layer.__call__,
            _name: str = layer.__name__,
        ) -> None:
            if scope["type"] == "http":
                names.append(_name)
            await _real(self, scope, receive, send)

        monkeypatch.setattr(layer, "__call__", spy)
    return names


async def _layers(
    client: httpx.AsyncClient, met: list[str], method: str, path: str, **kwargs: Any
) -> tuple[int, set[str]]:
    met.clear()
    answer = await client.request(method, path, **kwargs)
    return answer.status_code, set(met)


async def test_hot_gets_and_posts_take_the_lane(
    settings: Settings, client: httpx.AsyncClient, met: list[str]
) -> None:
    tokens = await signup_login(client)
    access = bearer(tokens["access_token"])
    for method, path, kwargs, status in [
        ("GET", "/v1/me", {"headers": access}, 200),
        ("GET", "/v1/me", {"headers": {**access, "Origin": "https://x.example"}}, 200),
        ("GET", "/v1/me", {}, 401),  # the exception handlers answer inside the lane too
        ("GET", "/.well-known/jwks.json", {}, 200),
        ("POST", "/v1/auth/refresh", {"json": {"refresh_token": tokens["refresh_token"]}}, 200),
        ("POST", "/oauth2/token", {"data": {"grant_type": "client_credentials"}}, 401),
        ("POST", "/oauth2/introspect", {"data": {"token": "x"}}, 401),
    ]:
        answered, layers = await _layers(client, met, method, path, **kwargs)
        assert answered == status, (method, path)
        assert layers >= EDGE, (method, path, layers)
        assert not layers & SKIPPED, (method, path, layers)
    # The body cap is one of the lane's layers: an oversize body never reaches the handler.
    oversize = b"x" * (settings.max_body_bytes + 1)
    answered, layers = await _layers(client, met, "POST", "/oauth2/token", content=oversize)
    assert answered == 413
    assert "BodyLimitMiddleware" in layers
    assert not layers & SKIPPED


async def test_everything_else_takes_the_full_stack(
    client: httpx.AsyncClient, met: list[str]
) -> None:
    tokens = await signup_login(client)
    access = bearer(tokens["access_token"])
    preflight = {"Origin": "https://x.example", "Access-Control-Request-Method": "POST"}
    for method, path, kwargs in [
        ("HEAD", "/v1/me", {"headers": access}),
        ("OPTIONS", "/oauth2/token", {"headers": preflight}),
        ("POST", "/v1/me", {"headers": access}),
        ("GET", "/healthz", {}),
        ("GET", "/v1/me/sessions", {"headers": access}),
    ]:
        _, layers = await _layers(client, met, method, path, **kwargs)
        # Only the full stack holds the OAuth preflight layer (a preflight ends there).
        assert layers >= EDGE | {"OAuthCorsMiddleware"}, (method, path, layers)
        if method != "OPTIONS":
            assert layers >= {"HeadAsGetMiddleware", "Router"}, (method, path, layers)


async def test_a_mounted_app_takes_the_full_stack(
    app: FastAPI, client: httpx.AsyncClient, met: list[str]
) -> None:
    # Under a root path the scope's path is not the route's own: the router decides.
    transport = httpx.ASGITransport(app=app, root_path="/auth")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as mounted:
        _, layers = await _layers(mounted, met, "GET", "/auth/.well-known/jwks.json")
    assert "Router" in layers
