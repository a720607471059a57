"""User administration (``users:read`` / ``users:write``); every change is audited.

Every change to an account first passes ``guard_target`` (services/admin/guard.py): never
on a user who holds more than the actor, never removing the last active administrator.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from keyturn.domain import ClientInfo, Principal, Session, User, utcnow
from keyturn.errors import Conflict, NotFound
from keyturn.services.accounts import (
    AccessTokenService,
    AccountMail,
    CredentialGuard,
    OneTimeTokens,
    Purpose,
    SessionService,
    new_user,
    parse_email,
    revoke_credentials,
)
from keyturn.services.admin.audit_log import record_action
from keyturn.services.admin.guard import guard_target
from keyturn.services.admin.permissions import Authorizer
from keyturn.services.paging import Page, decode_cursor, encode_cursor, page_of
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

READ = "users:read"
WRITE = "users:write"
# An administrator's lock lasts until an administrator lifts it.
ADMIN_LOCK = timedelta(days=36500)


def user_cursor(user: User) -> str:
    """The cursor that continues a listing right after ``user``."""
    return encode_cursor(user.email, user.id)


def _after(email: str, user_id: str) -> tuple[str, uuid.UUID]:
    return email, uuid.UUID(user_id)


class AdminUserService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        authorizer: Authorizer,
        access_tokens: AccessTokenService,
        sessions: SessionService,
        tokens: OneTimeTokens,
        mail: AccountMail,
        guard: CredentialGuard,
        set_password_ttl: int,
    ) -> None:
        self._uow_factory = uow_factory
        self._authorizer = authorizer
        self._access_tokens = access_tokens
        self._sessions = sessions
        self._tokens = tokens
        self._mail = mail
        self._guard = guard
        self._set_password_ttl = set_password_ttl

    async def list_users(
        self, principal: Principal, *, q: str | None, limit: int, cursor: str | None
    ) -> Page[User]:
        await self._authorizer.require(principal, READ)
        after = decode_cursor(cursor, _after, parts=2) if cursor else None
        async with self._uow_factory() as uow:
            rows = await uow.users.search(q, limit=limit + 1, after=after)
        return page_of(rows, limit, user_cursor)

    async def get_user(self, principal: Principal, user_id: uuid.UUID) -> User:
        await self._authorizer.require(principal, READ)
        async with self._uow_factory() as uow:
            return await _user(uow, user_id)

    async def create_user(
        self, principal: Principal, *, email: str, name: str | None, client: ClientInfo
    ) -> User:
        """Creates a password-less account and mails it a single-use set-password link."""
        await self._authorizer.require(principal, WRITE)
        email = parse_email(email)
        now = utcnow()
        user = new_user(email, name=name, password_hash=None, verified=False, now=now)
        async with self._uow_factory() as uow:
            if not await uow.users.add(user):
                raise Conflict("An account with this email already exists.")
            await self._mail_set_password(uow, user)
            await _audit(uow, "admin.user_created", principal, client, user.id)
            await uow.commit()
        self._mail.outbox.wake()
        return user

    async def update_user(
        self,
        principal: Principal,
        user_id: uuid.UUID,
        *,
        name: str | None,
        set_name: bool,
        email_verified: bool | None,
        disabled: bool | None,
        client: ClientInfo,
    ) -> User:
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        ended: list[uuid.UUID] = []
        async with self._uow_factory() as uow:
            await guard_target(
                uow, held=held, user_id=user_id, now=now, removes_admin=bool(disabled)
            )
            await uow.users.update_admin_fields(
                user_id,
                now,
                name=name,
                set_name=set_name,
                email_verified=email_verified,
                disabled=disabled,
            )
            if disabled:
                # A disabled account's sessions end at once, on every replica.
                ended = await uow.sessions.revoke_all(user_id, now, "admin_disabled")
            await _audit(uow, "admin.user_updated", principal, client, user_id)
            await uow.commit()
        await self._access_tokens.deny(ended)
        return await self.get_user(principal, user_id)

    async def delete_user(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        async with self._uow_factory() as uow:
            await guard_target(uow, held=held, user_id=user_id, now=now, removes_admin=True)
            ended = await uow.sessions.revoke_all(user_id, now, "admin_deleted")
            await uow.users.delete(user_id)
            await _audit(uow, "admin.user_deleted", principal, client, user_id)
            await uow.commit()
        await self._access_tokens.deny(ended)

    async def lock_user(self, principal: Principal, user_id: uuid.UUID, client: ClientInfo) -> None:
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        async with self._uow_factory() as uow:
            await guard_target(uow, held=held, user_id=user_id, now=now, removes_admin=True)
            # Unconditional, unlike the automatic lock: it replaces one in force, so the
            # automatic lock's expiry cannot end the administrator's.
            await uow.users.admin_lock(user_id, now=now, until=now + ADMIN_LOCK)
            ended = await uow.sessions.revoke_all(user_id, now, "admin_locked")
            await _audit(uow, "admin.user_locked", principal, client, user_id)
            await uow.commit()
        await self._access_tokens.deny(ended)

    async def unlock_user(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await guard_target(uow, held=held, user_id=user_id, now=now)
            await self._guard.unlock(uow, user, now)
            await _audit(uow, "admin.user_unlocked", principal, client, user_id)
            await uow.commit()
        await self._guard.forgive(user.email)

    async def reset_password(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        """Clears the password, revokes every credential and mails a set-password link.

        Sessions, API keys and pending one-time tokens (an email change above all) end
        with the password (issue 12 finding 1); the owner is told what was revoked.
        """
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await guard_target(uow, held=held, user_id=user_id, now=now)
            await uow.users.set_password_hash(user_id, None, now)
            revoked = await revoke_credentials(
                uow,
                user_id,
                now=now,
                reason="admin_password_reset",
                ip=client.ip,
                actor_session=principal.session_id,
            )
            # Issued after the revocation: the new set-password link is the only one.
            await self._mail_set_password(uow, user)
            await self._mail.password_changed(uow, to=user.email, revoked=revoked)
            await _audit(uow, "admin.password_reset", principal, client, user_id)
            await uow.commit()
        await self._access_tokens.deny(revoked.sessions)
        self._mail.outbox.wake()

    async def sessions(
        self, principal: Principal, user_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> Page[Session]:
        await self._authorizer.require(principal, READ)
        async with self._uow_factory() as uow:
            await _user(uow, user_id)
        return await self._sessions.list_for(user_id, limit=limit, cursor=cursor)

    async def sessions_of(
        self, principal: Principal, user_ids: Sequence[uuid.UUID], *, limit: int
    ) -> dict[uuid.UUID, list[Session]]:
        """The newest ``limit`` live sessions of each of ``user_ids`` (one permission check)."""
        await self._authorizer.require(principal, READ)
        return await self._sessions.list_for_users(user_ids, limit=limit)

    async def end_sessions(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> int:
        held = await self._authorizer.require(principal, WRITE)
        now = utcnow()
        async with self._uow_factory() as uow:
            await guard_target(uow, held=held, user_id=user_id, now=now)
            ended = await uow.sessions.revoke_all(user_id, now, "admin_revoked")
            await _audit(uow, "admin.sessions_revoked", principal, client, user_id)
            await uow.commit()
        await self._access_tokens.deny(ended)
        return len(ended)

    async def _mail_set_password(self, uow: UnitOfWork, user: User) -> None:
        token = await self._tokens.issue(
            uow,
            user_id=user.id,
            purpose=Purpose.RESET_PASSWORD,
            now=utcnow(),
            ttl=self._set_password_ttl,
            # Bound to "no password": the link dies once a password is set.
            binding=self._tokens.binding(None),
        )
        await self._mail.send(
            uow,
            "set_password",
            to=user.email,
            link=self._mail.link(self._mail.links.reset_password, token),
            token=token,
            expires_minutes=str(self._set_password_ttl // 60),
        )


async def _user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    user = await uow.users.get(user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def _audit(
    uow: UnitOfWork, event: str, principal: Principal, client: ClientInfo, target: uuid.UUID
) -> None:
    await record_action(uow, event, principal, client, {"target_user_id": str(target)})
