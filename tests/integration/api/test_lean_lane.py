"""The lean lane takes a hot route's GET and POST past the layers that would only pass
them on, and leaves everything else to the full stack (``keyturn.api.lean.lane``).

What it answers is compared with the framework routes in ``test_lean_edge_equality.py``;
these tests show which way each request went, by the edge steps it met: the lane skips
HEAD-as-GET, the OAuth preflight layer and the router, and still meets the edge (client
address, request context, transport guard, CORS, body cap: in the lane as steps of one
frame, ``FoldedEdge``) and the exception handlers.
"""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Router

from helpers import bearer, signup_login
from keyturn.api.http import middleware
from keyturn.api.http.cors import OAuthCorsMiddleware
from keyturn.api.http.hardening import ClientAddressMiddleware, TransportGuardMiddleware
from keyturn.api.http.head_requests import HeadAsGetMiddleware
from keyturn.api.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from keyturn.config import Settings

pytestmark = pytest.mark.anyio

# (owner, attribute, step): what each edge step runs, in the stack and in the fold alike.
STEPS = (
    (ClientAddressMiddleware, "resolve", "client address"),
    (RequestContextMiddleware, "__call__", "request context"),
    (TransportGuardMiddleware, "refusal", "transport guard"),
    (CORSMiddleware, "send", "CORS"),  # the stack's every answer; the fold's with Origin
    (middleware, "vary_origin", "CORS"),  # the fold's answer without Origin
    (BodyLimitMiddleware, "refusal", "body cap"),
    (OAuthCorsMiddleware, "__call__", "OAuth preflight"),
    (HeadAsGetMiddleware, "__call__", "HEAD as GET"),
    (Router, "__call__", "router"),
)
EDGE = {"client address", "request context", "transport guard", "CORS", "body cap"}
SKIPPED = {"OAuth preflight", "HEAD as GET", "router"}


@pytest.fixture
def met(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The edge steps (of ``STEPS``) each request met."""
    names: list[str] = []
    for owner, attribute, step in STEPS:
        real = getattr(owner, attribute)
        if inspect.iscoroutinefunction(real):

            async def spy(*args: Any, _real: Any = real, _step: str = step, **kw: Any) -> Any:
                names.append(_step)
                return await _real(*args, **kw)

        else:

            def spy(*args: Any, _real: Any = real, _step: str = step, **kw: Any) -> Any:
                names.append(_step)
                return _real(*args, **kw)

        monkeypatch.setattr(owner, attribute, spy)
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
    assert layers >= EDGE
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
        assert layers >= {"client address", "request context", "OAuth preflight"}, (
            method,
            path,
            layers,
        )
        if method != "OPTIONS":
            assert layers >= EDGE | {"HEAD as GET", "router"}, (method, path, layers)


async def test_a_mounted_app_takes_the_full_stack(
    app: FastAPI, client: httpx.AsyncClient, met: list[str]
) -> None:
    # Under a root path the scope's path is not the route's own: the router decides.
    transport = httpx.ASGITransport(app=app, root_path="/auth")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as mounted:
        _, layers = await _layers(mounted, met, "GET", "/auth/.well-known/jwks.json")
    assert "router" in layers
