"""CORS for browser-based OAuth clients on ``/oauth2/token``, ``/userinfo`` and ``/revoke``.

Two halves (DESIGN.md section 3; never ``/oauth2/authorize``, which browsers reach by
navigation, not by script):

- :class:`OAuthCorsMiddleware` answers the preflight (Fetch standard, "CORS-preflight
  request") for an origin that any client registered. It sits outside the first-party
  ``CORSMiddleware`` (``keyturn.api.http.hardening``) and lets every other request, and a
  preflight from an origin no client registered, through to it unchanged.
- :func:`apply_client_cors` adds ``Access-Control-Allow-Origin`` to an actual answer only
  when the request's ``Origin`` belongs to the client concerned. The token endpoint calls
  it with its authenticated client, revocation likewise, userinfo with the token's client.
- :func:`apply_error_cors` lets a browser client read an *error* answer of these paths
  (``invalid_grant``, ``invalid_token``, ...) when any client registered the origin: the
  client is often unknown then (its authentication failed), and an error body carries
  nothing that origin may not see, while without it the app sees only a network error.

No credentials mode (``Access-Control-Allow-Credentials`` is never sent): these endpoints
take client credentials and tokens in headers or the body, never cookies.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyturn.domain import OAuthClient
from keyturn.services.oauth2 import OAuthCorsOrigins

CORS_PATHS = frozenset({"/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke"})
ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Authorization, Content-Type"
MAX_AGE = "600"


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return str(value.decode("latin-1"))
    return None


def _is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope.get("headers", ())
    )


class OAuthCorsMiddleware:
    """Answers CORS preflights on the OAuth CORS paths for client-registered origins."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CORS_PATHS or not _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        origins: OAuthCorsOrigins = scope["app"].state.services.oauth_cors
        if origin is None or not await origins.registered(origin):
            # Not ours: the first-party allow-list decides (and refuses unknown origins).
            await self.app(scope, receive, send)
            return
        response = Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )
        await response(scope, receive, send)


def apply_client_cors(request: Request, response: Response, client: OAuthClient) -> None:
    """Lets the browser read ``response`` when the ``Origin`` is one of ``client``'s.

    Always ``Vary: Origin``: the answer differs by origin, so no cache may share it.
    """
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("origin")
    if origin is not None and OAuthCorsOrigins.allowed(client, origin):
        response.headers["Access-Control-Allow-Origin"] = origin


async def apply_token_client_cors(
    request: Request, response: Response, origins: OAuthCorsOrigins, client_id: str
) -> None:
    """:func:`apply_client_cors` for the client an access token was issued to (userinfo)."""
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("origin")
    if origin is not None and await origins.allowed_for(client_id, origin):
        response.headers["Access-Control-Allow-Origin"] = origin


async def apply_error_cors(request: Request, response: Response) -> None:
    """Lets a client-registered origin read an error answer of a CORS path."""
    if request.url.path not in CORS_PATHS:
        return
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("origin")
    origins: OAuthCorsOrigins = request.app.state.services.oauth_cors
    if origin is not None and await origins.registered(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
