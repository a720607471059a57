"""A user's own sessions: list, end one, end all others."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyturn.domain import ClientInfo, Principal, Session, utcnow
from keyturn.errors import InvalidInput, NotFound
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[Session]
    next_cursor: str | None


def encode_cursor(created_at: datetime, session_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, sid = raw.split("|", 1)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("cursor time lacks a zone")
        return moment, uuid.UUID(sid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "The cursor is not valid.", errors=[{"field": "cursor", "message": "malformed"}]
        ) from exc


class SessionService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        access_tokens: AccessTokenService,
        idle_ttl: int,
        read_uow_factory: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        # Pure reads run on the read-only unit of work (no BEGIN / ROLLBACK on PostgreSQL).
        self._read_uow_factory = read_uow_factory or uow_factory
        self._access_tokens = access_tokens
        self._idle_ttl = timedelta(seconds=idle_ttl)

    async def list_mine(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> SessionPage:
        return await self.list_for(principal.user_id, limit=limit, cursor=cursor)

    async def list_for(self, user_id: uuid.UUID, *, limit: int, cursor: str | None) -> SessionPage:
        """Live sessions of ``user_id``, newest first (the caller checked who may ask)."""
        after = decode_cursor(cursor) if cursor else None
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
        items = rows[:limit]
        more = len(rows) > limit
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return SessionPage(items=items, next_cursor=next_cursor)

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
