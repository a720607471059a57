"""FastAPI dependencies: the service registry, the caller's principal, the client's address.

Kept shallow on purpose: the hot path (``GET /v1/me``) runs one verification call and no
dependency chain deeper than two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyturn.api.http.hardening import client_ip
from keyturn.domain import ClientInfo, Principal
from keyturn.errors import CredentialsMissing, PermissionDenied
from keyturn.services.admin import looks_like_api_key, require_fresh_login
from keyturn.services.registry import Services

_bearer = HTTPBearer(
    auto_error=False,
    description="Access token (JWT, RFC 9068) or personal API key (`kt_<prefix>_<secret>`)",
)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_client(request: Request) -> ClientInfo:
    """The caller's address as resolved once per request through the trusted proxies.

    This address keys the rate limits and goes into audit rows and sessions; never read
    ``request.client`` or X-Forwarded-For directly (authentik CVE-2024-47070).
    """
    return ClientInfo(ip=client_ip(request.scope), user_agent=request.headers.get("user-agent"))


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The one Bearer check for REST and GraphQL: ``kt_...`` is an API key, else a JWT."""
    if credentials is None:
        raise CredentialsMissing
    services: Services = request.app.state.services
    token = credentials.credentials
    if looks_like_api_key(token):
        # Only the key path needs the address (its failures are throttled per IP).
        return await services.api_keys.authenticate(token, get_client(request))
    return await services.access_tokens.authenticate(token)


def require_scope(scope: str, *, fresh: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a principal holding ``scope``.

    With ``fresh`` it admits only a password login (an access token), never an API key:
    changing the password or email, deleting the account and creating keys.
    """

    async def _check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if fresh:
            require_fresh_login(principal)
        if scope not in principal.scopes:
            raise PermissionDenied(f"The token lacks the {scope!r} scope.")
        return principal

    return _check


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a principal whose current roles grant ``permission``."""

    async def _check(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        services: Services = request.app.state.services
        await services.authorizer.require(principal, permission)
        return principal

    return _check


# The dependency forms are ``async def`` on purpose: FastAPI runs a plain ``def``
# dependency in the thread pool, a thread hop per request for an attribute read. The
# plain functions above stay for callers outside dependency injection (the UI pages).
async def _services_dependency(request: Request) -> Services:
    return get_services(request)


async def _client_dependency(request: Request) -> ClientInfo:
    return get_client(request)


ServicesDep = Annotated[Services, Depends(_services_dependency)]
ClientDep = Annotated[ClientInfo, Depends(_client_dependency)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
