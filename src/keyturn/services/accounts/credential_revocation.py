"""Revoking a user's credentials after a credential event (issue 12, findings 1 and 22).

Sessions, API keys and pending one-time tokens go in the caller's unit of work; the caller
deny-lists the ended sessions after the commit.
See docs/technical/2026-11-26_backend_security-implementation.md (V7).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from keyturn.services.accounts.one_time_tokens import Purpose
from keyturn.services.ports import UnitOfWork

EVERY_PURPOSE: tuple[Purpose, ...] = tuple(Purpose)
# After a new password: reset and set-password links are bound to the password hash and
# die with it already (answering the clearer ``token_invalid``); these are not bound.
UNBOUND_PURPOSES: tuple[Purpose, ...] = (Purpose.EMAIL_CHANGE, Purpose.VERIFY_EMAIL)


@dataclass(frozen=True, slots=True)
class Revoked:
    """What one credential event revoked (ids and counts, never a secret)."""

    sessions: list[uuid.UUID] = field(default_factory=list)
    api_keys: list[uuid.UUID] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)

    def mail_context(self) -> dict[str, str]:
        """The counts the "password changed" notice lists."""
        return {
            "sessions_ended": str(len(self.sessions)),
            "api_keys_revoked": str(len(self.api_keys)),
            "email_changes_cancelled": str(self.tokens.get(Purpose.EMAIL_CHANGE, 0)),
        }


async def revoke_credentials(
    uow: UnitOfWork,
    user_id: uuid.UUID,
    *,
    now: datetime,
    reason: str,
    ip: str | None,
    actor_session: uuid.UUID | None = None,
    sessions: bool = True,
    keep_session: uuid.UUID | None = None,
    api_keys: bool = True,
    purposes: tuple[Purpose, ...] = EVERY_PURPOSE,
) -> Revoked:
    """Revokes the user's sessions, API keys and pending one-time tokens in ``uow``.

    Each kind that revoked something is audited once (``session.revoked_all``,
    ``key.revoked_all``, ``token.revoked_all``) with the reason, counts and ids.

    Args:
        uow: The caller's unit of work; the caller commits.
        user_id: Whose credentials.
        now: The event's time.
        reason: Why (stored on the sessions and in the audit rows), e.g. "password_reset".
        ip: The requesting client, for the audit rows.
        actor_session: The session that acted (audit only).
        sessions: Whether to end sessions (all but ``keep_session``).
        keep_session: The caller's own session, kept on a password change.
        api_keys: Whether to revoke every API key.
        purposes: Which pending one-time tokens to void.
    """
    ended: list[uuid.UUID] = []
    if sessions:
        ended = await uow.sessions.revoke_all(user_id, now, reason, keep=keep_session)
    keys = await uow.api_keys.revoke_all(user_id, now) if api_keys else []
    tokens: dict[str, int] = {}
    for purpose in purposes:
        if count := await uow.one_time_tokens.invalidate(user_id, purpose, now):
            tokens[str(purpose)] = count

    async def audit(event: str, data: dict[str, object]) -> None:
        await uow.audit.record(
            event,
            now=now,
            user_id=user_id,
            session_id=actor_session,
            ip=ip,
            data={"reason": reason, **data},
        )

    if ended:
        await audit(
            "session.revoked_all",
            {"count": len(ended), "session_ids": [str(item) for item in ended]},
        )
    if keys:
        key_ids = [str(item) for item in keys]
        await audit("key.revoked_all", {"count": len(keys), "key_ids": key_ids})
    if tokens:
        await audit("token.revoked_all", {"counts": tokens})
    return Revoked(sessions=ended, api_keys=keys, tokens=tokens)
