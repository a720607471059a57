"""The OpenID Connect UserInfo endpoint's claims (OpenID Connect Core 1.0 section 5.3)."""

from __future__ import annotations

import uuid
from typing import Any

from keyturn.domain import utcnow
from keyturn.errors import InsufficientScope, InvalidToken
from keyturn.services.oauth2.token_management import OAuthTokenService
from keyturn.services.ports import UnitOfWorkFactory

OPENID = "openid"


class UserInfoService:
    """Answers who the user of an access token is, limited to the granted scopes."""

    def __init__(self, *, uow_factory: UnitOfWorkFactory, tokens: OAuthTokenService) -> None:
        self._uow_factory = uow_factory
        self._tokens = tokens

    async def claims(self, access_token: str) -> tuple[dict[str, Any], str]:
        """The section 5.3.2 claims of the token's user and the token's ``client_id``.

        Raises:
            InvalidToken: Invalid, expired or revoked, or not issued for a user (a
                ``client_credentials`` token names no end user; RFC 6750 section 3.1).
            InsufficientScope: The token lacks ``openid`` (section 5.3: the token must
                come from an OpenID Connect request; first-party tokens never carry it).
        """
        claims = await self._tokens.access_token_claims(access_token)
        if claims is None:
            raise InvalidToken("The access token is invalid, expired or revoked.")
        if "sid" not in claims:
            raise InvalidToken("The access token names no user.")
        # The grant as it stands now (issue 12 finding 3): a scope the client's
        # registration lost (email, profile) releases nothing any more, and a deleted
        # client's grant releases nothing at all.
        scopes = await self._tokens.current_scope(claims)
        if not scopes:
            raise InvalidToken("The access token does not belong to a live user grant.")
        if OPENID not in scopes:
            raise InsufficientScope("The access token was not granted the openid scope.")
        try:
            user_id = uuid.UUID(str(claims["sub"]))
            session_id = uuid.UUID(str(claims["sid"]))
        except (KeyError, ValueError) as exc:
            raise InvalidToken("The access token names no user.") from exc
        async with self._uow_factory() as uow:
            session = await uow.sessions.get(session_id)
            user = await uow.users.get(user_id)
        now = utcnow()
        # The user of a live grant of this very client: a token whose session is gone, or a
        # disabled or locked account, answers like an invalid token (the lock holds on
        # every pathway, DESIGN.md section 5).
        if (
            session is None
            or session.user_id != user_id
            or session.client_id != claims.get("client_id")
            or session.revoked_at is not None
            or user is None
            or user.disabled
            or user.locked(now)
        ):
            raise InvalidToken("The access token does not belong to a live user grant.")
        # Section 5.4: sub always; profile and email add their claims, and nothing else is
        # ever released. updated_at is left out: Keyturn keeps no profile-change time.
        answer: dict[str, Any] = {"sub": str(user.id)}
        if "profile" in scopes and user.name is not None:
            answer["name"] = user.name
        if "email" in scopes:
            answer["email"] = user.email
            answer["email_verified"] = user.email_verified
        return answer, str(claims["client_id"])
