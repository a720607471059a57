"""FastAPI dependencies: the service registry, the caller's principal, the client's address.

Kept shallow on purpose: the hot path (``GET /v1/me``) runs one verification call and no
dependency chain deeper than two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyturn.api.hardening import client_ip
from keyturn.domain import ClientInfo, Principal
from keyturn.errors import CredentialsMissing, PermissionDenied
from keyturn.services.registry import Services

_bearer = HTTPBearer(auto_error=False, description="Access token (JWT, RFC 9068)")


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
    if credentials is None:
        raise CredentialsMissing
    services: Services = request.app.state.services
    return await services.access_tokens.authenticate(credentials.credentials)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a principal holding ``scope``."""

    async def _check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
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


ServicesDep = Annotated[Services, Depends(get_services)]
ClientDep = Annotated[ClientInfo, Depends(get_client)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
