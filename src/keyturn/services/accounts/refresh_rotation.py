"""Refresh-token rotation (RFC 6749 section 6) with the grace and reuse rules of DESIGN.md
section 4: one successor per token, the same successor again inside the grace window, and
the whole family ended when an older token comes back."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from keyturn.domain import ClientInfo, RefreshToken, Session, User, utcnow
from keyturn.errors import InvalidRefreshToken
from keyturn.observability.metrics import REFRESHES, REUSE_DETECTIONS
from keyturn.security.digests import (
    Digester,
    KeyRing,
    constant_time_equals,
    derive_successor_token,
    new_token,
)
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# new_token(32) gives 43 URL-safe characters; anything else is rejected before any lookup.
REFRESH_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class RefreshRotation:
    """Mints, rotates and ends refresh tokens; the caller throttles and audits failures."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        access_tokens: AccessTokenService,
        key_ring: KeyRing,
        idle_ttl: int,
        reuse_grace: int,
    ) -> None:
        self._uow_factory = uow_factory
        self._access_tokens = access_tokens
        self._digester = Digester(key_ring, "refresh-token")
        self._successor_keys = key_ring.derive("refresh-successor")
        self._idle_ttl = timedelta(seconds=idle_ttl)
        self._grace = timedelta(seconds=reuse_grace)

    def first_token(self, session: Session) -> tuple[str, RefreshToken, str]:
        """A session's first refresh token: its value, its row and the digest to store."""
        token = RefreshToken(
            id=uuid.uuid4(),
            session_id=session.id,
            parent_id=None,
            generation=0,
            created_at=session.created_at,
            rotated_at=None,
        )
        value = new_token()
        return value, token, self._digester.digest(value)

    def session_live(self, session: Session | None, now: datetime) -> bool:
        """Not revoked, within its absolute lifetime and used within the idle timeout."""
        return (
            session is not None
            and session.revoked_at is None
            and now < session.expires_at
            and now < session.last_seen_at + self._idle_ttl
        )

    async def rotate(
        self,
        refresh_token: str,
        client: ClientInfo,
        client_id: str | None,
        check: Callable[[Session, frozenset[str]], Session] | None,
    ) -> tuple[User, Session, str]:
        """One rotation (the arguments of ``AuthService.rotate``); a reuse ends the session."""
        if not REFRESH_TOKEN_SHAPE.match(refresh_token):
            REFRESHES.labels("invalid").inc()
            raise InvalidRefreshToken
        now = utcnow()
        async with self._uow_factory() as uow:
            # Two statements on the hot path: this read (token, session, user at once)
            # and the rotation below (claim, successor, session touch at once).
            found = await uow.refresh_tokens.find_with_session(
                self._digester.candidates(refresh_token)
            )
            # A locked account refreshes nothing: the lock holds on every pathway.
            # A token is bound to its client (RFC 6749 section 6): another client's token,
            # or a first-party token at /oauth2/token, answers like an unknown one.
            if found is None:
                REFRESHES.labels("invalid").inc()
                raise InvalidRefreshToken
            token, session, user, held = found
            if session.client_id != client_id or user.disabled or user.locked(now):
                REFRESHES.labels("invalid").inc()
                raise InvalidRefreshToken
            if not self.session_live(session, now):
                REFRESHES.labels("expired").inc()
                raise InvalidRefreshToken("The session has expired or was ended.")
            if check is not None:
                session = check(session, held)
            successor = derive_successor_token(self._successor_keys[0], refresh_token)
            next_token = RefreshToken(
                id=uuid.uuid4(),
                session_id=session.id,
                parent_id=token.id,
                generation=token.generation + 1,
                created_at=now,
                rotated_at=None,
            )
            if token.rotated_at is None and await uow.refresh_tokens.rotate(
                token, next_token, self._digester.digest(successor), now
            ):
                await uow.commit()
                REFRESHES.labels("rotated").inc()
                return user, session, successor
            # Already rotated (maybe by a concurrent request that just won the race).
            current = await uow.refresh_tokens.get(token.id)
            if current is not None and current.rotated_at is None:
                # Not rotated: the session was revoked after the read above (a password
                # change, logout everywhere, a lock...): no successor, and no reuse either
                # (issue 12 finding 20).
                REFRESHES.labels("expired").inc()
                raise InvalidRefreshToken("The session has expired or was ended.")
            replay = await self._grace_successor(uow, current, refresh_token, now)
            if replay is not None:
                REFRESHES.labels("grace").inc()
                return user, session, replay
            await self._revoke_family(uow, session, current, client, now)
        await self._access_tokens.deny([session.id])
        REFRESHES.labels("reuse").inc()
        REUSE_DETECTIONS.inc()
        raise InvalidRefreshToken("The refresh token was already used; the session has ended.")

    async def _grace_successor(
        self, uow: UnitOfWork, token: RefreshToken | None, value: str, now: datetime
    ) -> str | None:
        """The same successor again, if ``token`` is the immediate predecessor in the window.

        Only while the successor itself is unused: an older generation never qualifies
        (the hole of django-oauth-toolkit #1617).
        """
        if token is None or token.rotated_at is None or now - token.rotated_at > self._grace:
            return None
        found = await uow.refresh_tokens.successor(token.id)
        if found is None or found[0].rotated_at is not None:
            return None
        stored_digest = found[1]
        # The successor was derived with the newest key of its time; try each ring key.
        for key in self._successor_keys:
            candidate = derive_successor_token(key, value)
            if any(
                constant_time_equals(digest, stored_digest)
                for digest in self._digester.candidates(candidate)
            ):
                return candidate
        return None

    async def _revoke_family(
        self,
        uow: UnitOfWork,
        session: Session,
        token: RefreshToken | None,
        client: ClientInfo,
        now: datetime,
    ) -> None:
        await uow.sessions.revoke(session.id, now, "refresh_token_reuse")
        await uow.audit.record(
            "refresh_token.reuse_detected",
            now=now,
            user_id=session.user_id,
            session_id=session.id,
            ip=client.ip,
            data={"generation": token.generation if token else None},
        )
        await uow.commit()
        log.warning("refresh_token_reuse", session_id=str(session.id))
