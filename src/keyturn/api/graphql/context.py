"""Per-request GraphQL context: the caller's principal (lazily), address, services, loaders.

The principal comes from ``keyturn.api.http.deps.get_principal`` itself and permissions from
``require_scope`` / ``require_permission`` (the very callables REST routes depend on), so
both APIs admit exactly the same callers.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.security import HTTPBearer
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from keyturn.api.http.deps import get_client, get_principal, require_permission, require_scope
from keyturn.domain import ClientInfo, Principal, Session
from keyturn.domain_mfa import MfaStatus
from keyturn.errors import KeyturnError
from keyturn.services.registry import Services

_bearer = HTTPBearer(auto_error=False)

# The REST edge's own checks, built once (each is the callable a route depends on).
_SCOPE_CHECKS = {
    scope: require_scope(scope)
    for scope in ("me:read", "me:write", "sessions:read", "sessions:write")
}
_PERMISSION_CHECKS = {
    permission: require_permission(permission)
    for permission in ("users:read", "users:write", "roles:write", "audit:read")
}

SessionKey = tuple[uuid.UUID, int]


class Context(BaseContext):
    """What every resolver sees; one instance per HTTP request."""

    def __init__(self, request: Request, services: Services) -> None:
        super().__init__()
        self.request = request
        # strawberry types ``request`` loosely (it may be a WebSocket); ours is HTTP only.
        self.http = request
        self.services = services
        self._principal: Principal | None = None
        self._failure: KeyturnError | None = None
        # Dataloaders live for one request only: no data leaks between callers.
        self.sessions_of_users: DataLoader[SessionKey, list[Session]] = DataLoader(
            load_fn=self._load_sessions
        )
        self.mfa_of_users: DataLoader[uuid.UUID, MfaStatus] = DataLoader(load_fn=self._load_mfa)

    @property
    def client(self) -> ClientInfo:
        return get_client(self.http)

    async def principal(self) -> Principal:
        """The verified caller; anonymous or a bad token raises the REST error (once)."""
        if self._principal is not None:
            return self._principal
        if self._failure is not None:
            raise self._failure
        try:
            self._principal = await get_principal(self.http, await _bearer(self.http))
        except KeyturnError as exc:
            self._failure = exc
            raise
        return self._principal

    async def with_scope(self, scope: str) -> Principal:
        """The principal, if its token carries ``scope`` (as the REST ``/v1/me`` routes ask)."""
        return await _SCOPE_CHECKS[scope](await self.principal())

    async def with_permission(self, permission: str) -> Principal:
        """The principal, if its roles grant ``permission`` (as the REST admin routes ask)."""
        return await _PERMISSION_CHECKS[permission](self.http, await self.principal())

    async def _load_sessions(self, keys: list[SessionKey]) -> list[list[Session]]:
        principal = await self.principal()
        found: dict[SessionKey, list[Session]] = {}
        # Usually one distinct ``first`` per query: one statement per distinct value.
        for limit in sorted({limit for _, limit in keys}):
            user_ids = [user_id for user_id, wanted in keys if wanted == limit]
            batch = await self.services.admin_users.sessions_of(principal, user_ids, limit=limit)
            found.update({(user_id, limit): items for user_id, items in batch.items()})
        return [found.get(key, []) for key in keys]

    async def _load_mfa(self, user_ids: list[uuid.UUID]) -> list[MfaStatus]:
        principal = await self.principal()
        found = await self.services.mfa.factors.statuses_of(principal, user_ids)
        return [found[user_id] for user_id in user_ids]


GraphQLInfo = Info[Context, None]


async def get_context(request: Request) -> Context:
    """The router's ``context_getter``: cheap, never fails (errors surface per field)."""
    services: Services = request.app.state.services
    return Context(request, services)
