"""A user's own sessions: list, end one, end all others."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from keyturn.domain import ClientInfo, Principal, Session, utcnow
from keyturn.errors import NotFound
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.paging import Page, decode_cursor, encode_cursor, page_of, time_and_uuid
from keyturn.services.ports import UnitOfWorkFactory


def session_cursor(session: Session) -> str:
    """The cursor that continues a listing right after ``session``."""
    return encode_cursor(session.created_at.isoformat(), session.id)


class SessionService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        access_tokens: AccessTokenService,
        idle_ttl: int,
        read_uow_factory: UnitOfWorkFactory,
    ) -> None:
        self._uow_factory = uow_factory
        # Pure reads run on the read-only unit of work (no BEGIN / ROLLBACK on PostgreSQL).
        self._read_uow_factory = read_uow_factory
        self._access_tokens = access_tokens
        self._idle_ttl = timedelta(seconds=idle_ttl)

    async def list_mine(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[Session]:
        return await self.list_for(principal.user_id, limit=limit, cursor=cursor)

    async def list_for(
        self, user_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> Page[Session]:
        """Live sessions of ``user_id``, newest first (the caller checked who may ask)."""
        after = decode_cursor(cursor, time_and_uuid, parts=2) if cursor else None
        now = utcnow()
        async with self._read_uow_factory() as uow:
            # One extra row tells whether another page exists.
            rows = await uow.sessions.list_active(
                user_id,
                now,
                idle_since=now - self._idle_ttl,
                limit=limit + 1,
                after=after,
            )
        return page_of(rows, limit, session_cursor)

    async def list_for_users(
        self, user_ids: Sequence[uuid.UUID], *, limit: int
    ) -> dict[uuid.UUID, list[Session]]:
        """The newest ``limit`` live sessions of each user, in one query (for dataloaders)."""
        now = utcnow()
        found: dict[uuid.UUID, list[Session]] = {user_id: [] for user_id in user_ids}
        async with self._uow_factory() as uow:
            rows = await uow.sessions.list_active_for_users(
                list(found), now, idle_since=now - self._idle_ttl, limit_per_user=limit
            )
        for session in rows:
            found[session.user_id].append(session)
        return found

    async def end(self, principal: Principal, session_id: uuid.UUID, client: ClientInfo) -> None:
        now = utcnow()
        async with self._uow_factory() as uow:
            session = await uow.sessions.get(session_id)
            # Someone else's session answers exactly like a missing one.
            if session is None or session.user_id != principal.user_id or session.revoked_at:
                raise NotFound("No such session.")
            await uow.sessions.revoke(session_id, now, "user")
            await uow.audit.record(
                "session.revoked",
                now=now,
                user_id=principal.user_id,
                session_id=session_id,
                ip=client.ip,
            )
            await uow.commit()
        await self._access_tokens.deny([session_id])

    async def end_others(self, principal: Principal, client: ClientInfo) -> int:
        """Ends every session but the caller's; an API key (no session) ends them all."""
        now = utcnow()
        async with self._uow_factory() as uow:
            ended = await uow.sessions.revoke_all(
                principal.user_id, now, "user_others", keep=principal.session_id
            )
            await uow.audit.record(
                "session.revoked_others",
                now=now,
                user_id=principal.user_id,
                session_id=principal.session_id,
                ip=client.ip,
                data={"count": len(ended)},
            )
            await uow.commit()
        await self._access_tokens.deny(ended)
        return len(ended)
