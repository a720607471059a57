"""Which browser origins get CORS on the OAuth endpoints (DESIGN.md section 3).

A client's ``allowed_cors_origins`` get CORS on the token, userinfo and revocation
endpoints. A preflight names no client, so it is answered for an origin any client
registered; the actual answer carries ``Access-Control-Allow-Origin`` only for an origin
of the client concerned (the authenticated client, or the access token's client).
"""

from __future__ import annotations

import time

from keyturn.domain import OAuthClient
from keyturn.services.ports import UnitOfWorkFactory

# A newly registered origin works for preflights within this many seconds; removing one
# only matters for preflights, since actual answers always check the client's own list.
CACHE_SECONDS = 10.0


class OAuthCorsOrigins:
    """The registered-origin set (cached briefly) and the per-client check."""

    def __init__(self, *, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory
        self._origins: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    async def registered(self, origin: str) -> bool:
        """Whether any client lists ``origin`` (for preflight requests)."""
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            async with self._uow_factory() as uow:
                self._origins = await uow.clients.cors_origins()
            self._loaded_at = time.monotonic()
        return origin in self._origins

    @staticmethod
    def allowed(client: OAuthClient, origin: str) -> bool:
        """Whether ``client`` registered ``origin`` (exact match, RFC 6454 section 6.1)."""
        return origin in client.allowed_cors_origins

    async def allowed_for(self, client_id: str, origin: str) -> bool:
        """Whether the client named ``client_id`` registered ``origin``."""
        async with self._uow_factory() as uow:
            found = await uow.clients.find(client_id)
        return found is not None and self.allowed(found[0], origin)
