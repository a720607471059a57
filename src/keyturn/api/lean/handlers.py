"""The lean handlers: parse, call the FastAPI route's own endpoint function, render.

Each handler does what FastAPI's dependency solving did for the route, in the same order
(the per-IP ceiling of the credential endpoints first, through the same
``credential_request`` as the router dependency, then the body; the principal, then
its scope), and hands the values to the endpoint function the route decorates, so the
services are called by the same code. Only the answer of a route with a response model
is rendered here, with the bytes FastAPI's serializer gives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from keyturn.api.http.deps import get_client, require_scope
from keyturn.api.http.throttling import credential_request
from keyturn.api.lean.requests import M, dump_json, principal, read_json, validate_body
from keyturn.api.oauth2 import token as oauth2_token
from keyturn.api.oauth2 import token_management, userinfo
from keyturn.api.rest import auth, me, ops
from keyturn.api.rest.schemas.auth import LoginRequest, RefreshRequest
from keyturn.domain import ClientInfo
from keyturn.services.registry import Services

_JSON = "application/json"
# The check behind me.MeRead (Depends(require_scope("me:read"))).
_ME_READ = require_scope("me:read")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_me(request: Request) -> Response:
    """``GET /v1/me`` (``api/rest/me.py``)."""
    caller = await _ME_READ(await principal(request))
    user = await me.get_me(caller, _services(request))
    return Response(dump_json(user), media_type=_JSON)


async def _json_credential(
    request: Request,
    path: str,
    model: type[M],
    endpoint: Callable[[M, Services, ClientInfo], Awaitable[BaseModel]],
) -> Response:
    """A JSON-bodied credential route of ``api/rest/auth.py``, read as FastAPI reads it."""
    # FastAPI reads (and parses) the body before it solves the dependencies: a malformed
    # JSON body is refused before the per-IP ceiling counts it, an invalid one after.
    body = await read_json(request)
    services = _services(request)
    client = get_client(request)
    async with credential_request(services.throttle, client.ip, path):
        answer = await endpoint(validate_body(model, body), services, client)
    return Response(dump_json(answer), media_type=_JSON)


async def login(request: Request) -> Response:
    """``POST /v1/auth/login``: the token pair, or the second step's challenge."""
    return await _json_credential(request, "/v1/auth/login", LoginRequest, auth.login)


async def refresh(request: Request) -> Response:
    """``POST /v1/auth/refresh``."""
    return await _json_credential(request, "/v1/auth/refresh", RefreshRequest, auth.refresh)


async def token(request: Request) -> Response:
    """``POST /oauth2/token`` (``api/oauth2/token.py``)."""
    services = _services(request)
    client = get_client(request)
    async with credential_request(services.throttle, client.ip, "/oauth2/token"):
        return await oauth2_token.token(request, services, client)


async def introspect(request: Request) -> Response:
    """``POST /oauth2/introspect`` (``api/oauth2/token_management.py``)."""
    services = _services(request)
    client = get_client(request)
    async with credential_request(services.throttle, client.ip, "/oauth2/introspect"):
        return await token_management.introspect(request, services, client)


async def userinfo_get(request: Request) -> Response:
    """``GET /oauth2/userinfo`` (``api/oauth2/userinfo.py``)."""
    return await userinfo.userinfo_get(request, _services(request))


async def userinfo_post(request: Request) -> Response:
    """``POST /oauth2/userinfo`` (``api/oauth2/userinfo.py``)."""
    return await userinfo.userinfo_post(request, _services(request))


async def jwks(request: Request) -> Response:
    """``GET /.well-known/jwks.json`` (``api/rest/ops.py``)."""
    return await ops.jwks(_services(request))
