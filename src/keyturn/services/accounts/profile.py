"""The signed-in user's own account, and operator commands on accounts."""

from __future__ import annotations

import dataclasses

from keyturn.domain import ADMIN_ROLE, ClientInfo, Principal, User, utcnow
from keyturn.errors import Conflict, NotFound
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.accounts.credential_revocation import UNBOUND_PURPOSES, revoke_credentials
from keyturn.services.accounts.credential_rules import PasswordPolicy, new_user, parse_email
from keyturn.services.accounts.lifecycle_mail import AccountMail
from keyturn.services.accounts.lockout import CredentialGuard, reauthenticate
from keyturn.services.accounts.user_cache import UserCache
from keyturn.services.admin import require_fresh_login
from keyturn.services.ports import UnitOfWorkFactory


class UserService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hash_pool: HashPool,
        access_tokens: AccessTokenService,
        policy: PasswordPolicy,
        mail: AccountMail,
        guard: CredentialGuard,
        read_uow_factory: UnitOfWorkFactory,
        profiles: UserCache,
    ) -> None:
        self._mail = mail
        self._profiles = profiles
        self._guard = guard
        self._uow_factory = uow_factory
        # Pure reads run on the read-only unit of work (no BEGIN / ROLLBACK on PostgreSQL).
        self._read_uow_factory = read_uow_factory
        self._hash_pool = hash_pool
        self._access_tokens = access_tokens
        self._policy = policy

    async def me(self, principal: Principal) -> User:
        async with self._read_uow_factory() as uow:
            return _existing(await uow.users.get(principal.user_id))

    async def profile(self, principal: Principal) -> User:
        """``me`` for display only (no password hash), from the per-process cache
        (``user_cache.py``); what checks a credential calls ``me``."""
        return _existing(await self._profiles.profile(principal.user_id))

    async def update_me(self, principal: Principal, *, name: str | None) -> User:
        async with self._uow_factory() as uow:
            if await uow.users.get(principal.user_id) is None:
                raise NotFound("The account no longer exists.")
            await uow.users.update_name(principal.user_id, name, utcnow())
            await uow.commit()
        return await self.me(principal)

    async def change_password(
        self, principal: Principal, current: str, new: str, client: ClientInfo
    ) -> None:
        """Changes the password after re-authentication; revokes every other credential.

        Every other session, every API key and every pending one-time token end with the
        old password (issue 12 finding 1); the caller's own session stays.
        """
        require_fresh_login(principal)
        user = await self.me(principal)
        normalized = self._policy.check(new, email=user.email, field="new_password")
        await reauthenticate(
            self._guard,
            self._hash_pool,
            self._policy,
            user,
            current,
            client,
            event="password.change_failed",
        )
        now = utcnow()
        password_hash = await self._hash_pool.hash(normalized)
        async with self._uow_factory() as uow:
            await uow.users.set_password_hash(user.id, password_hash, now)
            revoked = await revoke_credentials(
                uow,
                user.id,
                now=now,
                reason="password_changed",
                ip=client.ip,
                actor_session=principal.session_id,
                keep_session=principal.session_id,
                purposes=UNBOUND_PURPOSES,
            )
            await self._mail.password_changed(uow, to=user.email, revoked=revoked)
            await uow.audit.record(
                "password.changed",
                now=now,
                user_id=user.id,
                session_id=principal.session_id,
                ip=client.ip,
                data={"sessions_ended": len(revoked.sessions)},
            )
            await uow.commit()
        await self._access_tokens.deny(revoked.sessions)
        self._mail.outbox.wake()

    async def create_admin(self, email: str, password: str) -> User:
        """Creates a verified account holding the built-in ``admin`` role (CLI)."""
        email = parse_email(email)
        normalized = self._policy.check(password, email=email)
        password_hash = await self._hash_pool.hash(normalized)
        now = utcnow()
        user = new_user(email, name=None, password_hash=password_hash, verified=True, now=now)
        async with self._uow_factory() as uow:
            if not await uow.users.add(user):
                raise Conflict("An account with this email already exists.")
            await uow.users.grant_role(user.id, ADMIN_ROLE)
            await uow.audit.record("admin.created", now=now, user_id=user.id)
            await uow.commit()
        return dataclasses.replace(user, roles=(ADMIN_ROLE,))


def _existing(user: User | None) -> User:
    if user is None or user.disabled:
        # The token outlived its account (deleted or disabled in the meantime).
        raise NotFound("The account no longer exists.")
    return user
