"""The one gate every credential check passes: throttle, silent lock, audit.

Keycloak CVE-2026-9798 was a pathway that checked a password without the lockout. Here
every pathway (login, refresh, re-authentication, one-time tokens; later MFA and the
OAuth endpoints) calls ``before`` and, on failure, ``failed`` (DESIGN.md section 5).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyturn.domain import ClientInfo, User, utcnow
from keyturn.errors import CurrentPasswordIncorrect
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.credential_rules import PasswordPolicy
from keyturn.services.accounts.lifecycle_mail import AccountMail
from keyturn.services.accounts.throttle import Throttle
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

MAX_LOCK = timedelta(hours=24)


class CredentialGuard:
    def __init__(
        self,
        *,
        throttle: Throttle,
        uow_factory: UnitOfWorkFactory,
        mail: AccountMail,
        lock_seconds: int,
    ) -> None:
        self.throttle = throttle
        self._uow_factory = uow_factory
        self._mail = mail
        self._lock = timedelta(seconds=lock_seconds)

    async def before(self, account: str, client: ClientInfo) -> None:
        """429 when this account + IP failed too often (checked before any hashing)."""
        await self.throttle.guard(account, client.ip)

    def lock_span(self, lock_count: int) -> timedelta:
        """15 min, 30 min, 1 h, ... for each new lock, at most a day (progressive)."""
        span: timedelta = self._lock * 2 ** max(lock_count - 1, 0)
        return min(span, MAX_LOCK)

    async def failed(
        self,
        account: str,
        user: User | None,
        client: ClientInfo,
        *,
        event: str,
        factor: str,
        data: dict[str, str] | None = None,
    ) -> None:
        """Counts a failure; locks the account silently once it crosses its threshold.

        ``data`` adds non-personal details to the audit row (e.g. an OAuth client_id).
        """
        crossed = await self.throttle.failed(account, client.ip)
        now = utcnow()
        locked = False
        async with self._uow_factory() as uow:
            if crossed and user is not None and not user.locked(now):
                locked = await self._lock_account(uow, user, client, now)
            await uow.audit.record(
                event,
                now=now,
                user_id=user.id if user else None,
                ip=client.ip,
                data={**(data or {}), "factor": factor},
            )
            await uow.commit()
        if locked:
            self._mail.outbox.wake()

    async def _lock_account(
        self, uow: UnitOfWork, user: User, client: ClientInfo, now: datetime
    ) -> bool:
        count = user.lock_count + 1
        until = now + self.lock_span(count)
        if not await uow.users.lock(user.id, now=now, until=until, count=count):
            return False  # another request locked it first and mailed the owner
        await self._mail.send(
            uow,
            "account_locked",
            to=user.email,
            link_reset=self._mail.link(self._mail.links.forgot_password),
        )
        await uow.audit.record(
            "account.locked",
            now=now,
            user_id=user.id,
            ip=client.ip,
            data={"until": until.isoformat(), "lock_count": count},
        )
        return True

    async def unlock(self, uow: UnitOfWork, user: User, now: datetime) -> None:
        """An administrator's unlock: lifts both kinds of lock, in the caller's work."""
        await uow.users.unlock(user.id, now)

    async def lift_automatic_lock(self, uow: UnitOfWork, user: User, now: datetime) -> bool:
        """The owner's password reset: lifts the throttle's lock, never an administrator's.

        Issue 12 finding 2: a reset that cleared any lock let an admin-locked user unlock
        himself through "forgot password".
        """
        return await uow.users.unlock_automatic(user.id, now)

    async def forgive(self, account: str) -> None:
        await self.throttle.forgive(account)


async def reauthenticate(
    guard: CredentialGuard,
    hash_pool: HashPool,
    policy: PasswordPolicy,
    user: User,
    password: str,
    client: ClientInfo,
    *,
    event: str,
) -> None:
    """Checks the password of a signed-in user (change password, change email, delete)."""
    await guard.before(user.email, client)
    now = utcnow()
    ok = (
        not user.locked(now)
        and policy.may_match(password)
        and (await hash_pool.verify(user.password_hash, password)).ok
    )
    if not ok:
        await guard.failed(user.email, user, client, event=event, factor="pwd")
        raise CurrentPasswordIncorrect
