"""Single-use tokens for email verification, password reset and email change.

DESIGN.md section 4: 256 random bits, only a keyed digest stored, bound to one purpose,
expiring, single use enforced atomically in SQL; a failed attempt does not burn it.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from keyturn.domain import OneTimeToken
from keyturn.errors import TokenExpired, TokenInvalid, TokenMalformed, TokenUsed, TokenWrongPurpose
from keyturn.security.digests import Digester, KeyRing, new_token
from keyturn.services.ports import UnitOfWork

# new_token(32) gives 43 URL-safe characters; anything else is refused before a lookup.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class Purpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105  (a purpose name, not a secret)
    EMAIL_CHANGE = "email_change"
    # The second step of a login (issue 15): never a bearer token anywhere else.
    MFA_LOGIN = "mfa_login"


class OneTimeTokens:
    """Issues and checks one-time tokens inside the caller's unit of work."""

    def __init__(self, *, key_ring: KeyRing) -> None:
        self._digester = Digester(key_ring, "one-time-token")
        # Bindings are digests too: a password hash never leaves the users table.
        self._binder = Digester(key_ring, "one-time-binding")

    def binding(self, value: str | None) -> str:
        return self._binder.digest(value or "")

    async def issue(
        self,
        uow: UnitOfWork,
        *,
        user_id: uuid.UUID,
        purpose: Purpose,
        now: datetime,
        ttl: int,
        binding: str | None = None,
        data: dict[str, str] | None = None,
        new_user: bool = False,
    ) -> str:
        """Burns the user's earlier tokens for ``purpose`` and returns a new one.

        ``new_user``: the account was created in this unit of work and holds no token.
        """
        if not new_user:
            await uow.one_time_tokens.invalidate(user_id, purpose, now)
        value = new_token()
        await uow.one_time_tokens.add(
            OneTimeToken(
                id=uuid.uuid4(),
                user_id=user_id,
                purpose=purpose,
                binding=binding,
                data=data or {},
                created_at=now,
                expires_at=now + timedelta(seconds=ttl),
                used_at=None,
            ),
            self._digester.digest(value),
        )
        return value

    async def issue_spent(
        self, uow: UnitOfWork, *, email: str, purpose: Purpose, now: datetime
    ) -> None:
        """The work of ``issue(new_user=True)`` for the account holding ``email``, with a
        token nobody can use: a signup for a taken address costs what a free one does
        (issue 12 finding 5)."""
        digest = self._digester.digest(new_token())
        await uow.one_time_tokens.add_spent_for_email(email, purpose, digest, now)

    async def check(
        self, uow: UnitOfWork, value: str, purpose: Purpose, now: datetime
    ) -> OneTimeToken:
        """Finds a usable token without using it up (so a bad request does not burn it)."""
        if not TOKEN_SHAPE.match(value):
            raise TokenMalformed("The token is not well-formed.")
        token = await uow.one_time_tokens.find(self._digester.candidates(value))
        if token is None:
            raise TokenInvalid("The token is unknown.")
        if token.purpose != purpose:
            raise TokenWrongPurpose(f"This token is not for {purpose.replace('_', ' ')}.")
        if token.used_at is not None:
            raise TokenUsed("The token was already used.")
        if now >= token.expires_at:
            raise TokenExpired("The token has expired; ask for a new one.")
        return token

    async def consume(self, uow: UnitOfWork, token: OneTimeToken, now: datetime) -> None:
        """Uses the token up; exactly one of many concurrent callers gets through."""
        if not await uow.one_time_tokens.consume(token.id, now):
            raise TokenUsed("The token was already used.")
