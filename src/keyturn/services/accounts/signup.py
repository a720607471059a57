"""Signup (DESIGN.md section 3): the same answer whether or not the address is taken."""

from __future__ import annotations

from keyturn.domain import ClientInfo, utcnow
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.credential_rules import PasswordPolicy, new_user, normalize_email
from keyturn.services.accounts.lifecycle_mail import AccountMail
from keyturn.services.accounts.lockout import CredentialGuard
from keyturn.services.accounts.one_time_tokens import OneTimeTokens, Purpose
from keyturn.services.ports import UnitOfWorkFactory


class SignupService:
    """Creates accounts; the owner of a taken address is mailed instead (no enumeration)."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hash_pool: HashPool,
        policy: PasswordPolicy,
        tokens: OneTimeTokens,
        mail: AccountMail,
        verify_ttl: int,
        guard: CredentialGuard,
    ) -> None:
        self._uow_factory = uow_factory
        self._hash_pool = hash_pool
        self._policy = policy
        self._tokens = tokens
        self._mail = mail
        self._verify_ttl = verify_ttl
        self._guard = guard

    async def signup(self, email: str, password: str, name: str | None, client: ClientInfo) -> None:
        """Creates the account if the address is free; answers the same either way."""
        await self._guard.throttle.signup(client.ip)
        email = normalize_email(email)
        normalized = self._policy.check(password, email=email)
        # Hash before looking the address up: a taken address costs the same work.
        password_hash = await self._hash_pool.hash(normalized)
        now = utcnow()
        user = new_user(email, name=name, password_hash=password_hash, verified=False, now=now)
        # Counted for every address alike, so the limit reveals nothing about accounts.
        may_mail = await self._mail.allow(email, client.ip, silent=True)
        async with self._uow_factory() as uow:
            if await uow.users.add(user):
                await uow.audit.record("user.signup", now=now, user_id=user.id, ip=client.ip)
                if may_mail:
                    token = await self._tokens.issue(
                        uow,
                        user_id=user.id,
                        purpose=Purpose.VERIFY_EMAIL,
                        now=now,
                        ttl=self._verify_ttl,
                        new_user=True,
                    )
                    await self._mail.send(
                        uow,
                        "verify_email",
                        to=email,
                        link=self._mail.link(self._mail.links.verify_email, token),
                        token=token,
                        expires_minutes=str(self._verify_ttl // 60),
                    )
            else:
                # Enumeration-safe: the same answer; the owner is told instead.
                await uow.audit.record("user.signup_existing", now=now, ip=client.ip)
                if may_mail:
                    # Equal work: the token write of a new account's verification, spent at
                    # birth (a taken address must not answer faster, finding 5).
                    await self._tokens.issue_spent(
                        uow, email=email, purpose=Purpose.VERIFY_EMAIL, now=now
                    )
                    await self._mail.send(
                        uow,
                        "account_exists",
                        to=email,
                        link_login=self._mail.link(self._mail.links.login),
                        link_reset=self._mail.link(self._mail.links.forgot_password),
                    )
            await uow.commit()
        self._mail.outbox.wake()
