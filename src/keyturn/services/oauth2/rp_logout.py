"""OpenID Connect RP-Initiated Logout 1.0: checking what the client sent (sections 2-3).

The edge (``keyturn.api.ui.rp_logout``) asks here which client is asking, whether its
``id_token_hint`` is ours and whether ``post_logout_redirect_uri`` may be used; ending
the browser session is ``BrowserSessions.logout``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from keyturn.domain import OAuthClient
from keyturn.services.oauth2.id_tokens import IdTokenHints
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """What a logout request proved.

    Attributes:
        user_id: The ``sub`` of a valid ``id_token_hint``; None without one.
        client: The client named by the hint's ``aud`` or by ``client_id``; None when
            neither names a registered client, or they disagree.
        redirect_uri: ``post_logout_redirect_uri`` when it exactly matches one the client
            registered (section 3); None otherwise: then Keyturn never redirects.
    """

    user_id: uuid.UUID | None
    client: OAuthClient | None
    redirect_uri: str | None


class RpLogoutService:
    """Validates RP-initiated logout parameters."""

    def __init__(self, *, uow_factory: UnitOfWorkFactory, hints: IdTokenHints) -> None:
        self._uow_factory = uow_factory
        self._hints = hints

    async def check(
        self, *, id_token_hint: str | None, client_id: str | None, redirect_uri: str | None
    ) -> LogoutRequest:
        """Which user and client the request names, and where it may go back to."""
        hinted = await self._hints.read(id_token_hint) if id_token_hint else None
        user_id, hinted_client = hinted if hinted else (None, None)
        # Section 2: client_id, when sent with a hint, must be the hint's client.
        if hinted_client and client_id and client_id != hinted_client:
            return LogoutRequest(user_id=None, client=None, redirect_uri=None)
        named = hinted_client or client_id
        client: OAuthClient | None = None
        if named and len(named) <= 64:
            async with self._uow_factory() as uow:
                found = await uow.clients.find(named)
            client = found[0] if found else None
        # Section 3: exact string comparison with a registered value; no normalisation,
        # so a trailing slash, case, extra query, fragment or port never matches.
        allowed = (
            redirect_uri
            if client is not None
            and redirect_uri is not None
            and redirect_uri in client.post_logout_redirect_uris
            else None
        )
        return LogoutRequest(user_id=user_id, client=client, redirect_uri=allowed)
