"""Account lifecycle: verify email, reset password, change email, delete, export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from keyturn.domain import (
    ApiKey,
    AuditEvent,
    ClientInfo,
    ConsentListing,
    OneTimeToken,
    Principal,
    Session,
    User,
    utcnow,
)
from keyturn.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OneTimeTokenError,
    TokenInvalid,
)
from keyturn.security.digests import constant_time_equals
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.accounts.account_requests import (
    EMAIL_CHANGE,
    FORGOT_PASSWORD,
    RESEND_VERIFICATION,
    AccountRequests,
    barred,
)
from keyturn.services.accounts.credential_revocation import UNBOUND_PURPOSES, revoke_credentials
from keyturn.services.accounts.credential_rules import PasswordPolicy, normalize_email
from keyturn.services.accounts.lifecycle_mail import AccountMail, mask_email
from keyturn.services.accounts.lockout import CredentialGuard, reauthenticate
from keyturn.services.accounts.one_time_tokens import OneTimeTokens, Purpose
from keyturn.services.accounts.recent_sign_in import RecentSignIn
from keyturn.services.admin import keep_an_admin, require_fresh_login
from keyturn.services.ports import UnitOfWorkFactory

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPORT_AUDIT_LIMIT = 1000
EXPORT_SESSION_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AccountData:
    """A user's data export (GDPR art. 15/20)."""

    user: User
    sessions: list[Session]
    api_keys: list[ApiKey]
    consents: list[ConsentListing]
    audit_events: list[AuditEvent]


class AccountService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hash_pool: HashPool,
        access_tokens: AccessTokenService,
        tokens: OneTimeTokens,
        mail: AccountMail,
        policy: PasswordPolicy,
        guard: CredentialGuard,
        recent_sign_in: RecentSignIn,
        requests: AccountRequests,
        read_uow_factory: UnitOfWorkFactory,
    ) -> None:
        self._requests = requests
        self._guard = guard
        self._recent_sign_in = recent_sign_in
        self._uow_factory = uow_factory
        # Pure reads run on the read-only unit of work (no BEGIN / ROLLBACK on PostgreSQL).
        self._read_uow_factory = read_uow_factory
        self._hash_pool = hash_pool
        self._access_tokens = access_tokens
        self._tokens = tokens
        self._mail = mail
        self._policy = policy

    # -- email verification -------------------------------------------------------------

    async def verify_email(self, token: str, client: ClientInfo) -> None:
        record = await self._checked_token(token, Purpose.VERIFY_EMAIL, client)
        now = utcnow()
        async with self._uow_factory() as uow:
            await self._tokens.consume(uow, record, now)
            await uow.users.mark_email_verified(record.user_id, now)
            await uow.audit.record("email.verified", now=now, user_id=record.user_id, ip=client.ip)
            await uow.commit()

    async def resend_verification(self, email: str, client: ClientInfo) -> None:
        """Always the same answer; a mail only to an existing, unverified account.

        Answers in the same time for any address (issue 12 finding 5): the request only
        queues one request row; the worker decides whether anything is mailed.
        """
        email = normalize_email(email)
        await self._mail.allow(email, client.ip)
        await self._requests.queue(RESEND_VERIFICATION, email=email, client=client)

    # -- password reset -----------------------------------------------------------------

    async def forgot_password(self, email: str, client: ClientInfo) -> None:
        """Always the same answer, body and time; the owner gets a single-use reset token.

        The request queues one request row of the same shape for any address (issue 12
        finding 5); the worker issues the token and mails it (``AccountRequests``).
        """
        email = normalize_email(email)
        await self._mail.allow(email, client.ip)
        await self._requests.queue(FORGOT_PASSWORD, email=email, client=client)

    async def reset_password(self, token: str, password: str, client: ClientInfo) -> None:
        """Sets the password, revokes every other credential, lifts a lock, mails a notice.

        Whatever was planted with the old password dies with it (issue 12 finding 1):
        every session, every API key and every pending email-change and verification
        token (other reset links die through their password binding).
        """
        record = await self._checked_token(token, Purpose.RESET_PASSWORD, client)
        async with self._uow_factory() as uow:
            user = await uow.users.get(record.user_id)
        binding = self._tokens.binding(user.password_hash if user else None)
        if user is None or not constant_time_equals(record.binding or "", binding):
            raise TokenInvalid("The token is no longer valid: the password has changed.")
        if barred(user):
            raise TokenInvalid("The token is no longer valid.")
        # The policy is checked before the token is used up: a weak password burns nothing.
        normalized = self._policy.check(password, email=user.email)
        password_hash = await self._hash_pool.hash(normalized)
        now = utcnow()
        async with self._uow_factory() as uow:
            current = await uow.users.get(user.id)
            if current is None or current.password_hash != user.password_hash:
                raise TokenInvalid("The token is no longer valid: the password has changed.")
            if barred(current):
                raise TokenInvalid("The token is no longer valid.")
            await self._tokens.consume(uow, record, now)
            await uow.users.set_password_hash(user.id, password_hash, now)
            # Receiving the token proves control of the mailbox (and ends a lock).
            await uow.users.mark_email_verified(user.id, now)
            # Only the automatic lock: an administrator's stays (checked again in the UPDATE).
            if not await self._guard.lift_automatic_lock(uow, user, now):
                raise TokenInvalid("The token is no longer valid.")
            revoked = await revoke_credentials(
                uow,
                user.id,
                now=now,
                reason="password_reset",
                ip=client.ip,
                purposes=UNBOUND_PURPOSES,
            )
            await self._mail.password_changed(uow, to=user.email, revoked=revoked)
            await uow.audit.record(
                "password.reset",
                now=now,
                user_id=user.id,
                ip=client.ip,
                data={"sessions_ended": len(revoked.sessions)},
            )
            await uow.commit()
        await self._guard.forgive(user.email)
        await self._access_tokens.deny(revoked.sessions)
        self._mail.outbox.wake()

    # -- email change -------------------------------------------------------------------

    async def request_email_change(
        self, principal: Principal, password: str, new_email: str, client: ClientInfo
    ) -> None:
        """Mails a confirmation token to the new address and a notice to the old one."""
        require_fresh_login(principal)
        user = await self._user(principal)
        new_email = normalize_email(new_email)
        if new_email == user.email:
            raise InvalidInput(
                "The new address is the current one.",
                errors=[{"field": "new_email", "message": "same as the current address"}],
            )
        await self._reauthenticate(user, password, client)
        await self._mail.allow(new_email, client.ip)
        # Whether the new address is taken is decided by the worker, after the answer:
        # the time of this request does not tell (issue 12 finding 5).
        await self._requests.queue(EMAIL_CHANGE, email=new_email, client=client, user_id=user.id)

    async def confirm_email_change(
        self, principal: Principal, token: str, client: ClientInfo
    ) -> User:
        """Moves the account to the confirmed address (the recovery address).

        Only a session whose password sign-in is recent may do it (ASVS 7.5.1), never an
        API key: a key or a stolen refresh token planted with a phished password must not
        move the address where the owner's reset links go (issue 12 finding 1). The
        tokens mailed to the old address (reset, set-password, verification) die with the
        change (finding 22): whoever still reads the old mailbox gains nothing.
        """
        await self._recent_sign_in.require(principal)
        record = await self._checked_token(token, Purpose.EMAIL_CHANGE, client)
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await uow.users.get(principal.user_id)
            # A token of another account answers like an unknown one.
            if user is None or record.user_id != user.id:
                raise TokenInvalid("The token is unknown.")
            new_email = record.data["new_email"]
            await self._tokens.consume(uow, record, now)
            if not await uow.users.change_email(user.id, new_email, now):
                raise Conflict("Another account now uses this address.")
            await revoke_credentials(
                uow,
                user.id,
                now=now,
                reason="email_changed",
                ip=client.ip,
                actor_session=principal.session_id,
                sessions=False,
                api_keys=False,
            )
            await self._mail.send(
                uow, "email_changed", to=user.email, new_email_masked=mask_email(new_email)
            )
            await uow.audit.record(
                "email.changed",
                now=now,
                user_id=user.id,
                session_id=principal.session_id,
                ip=client.ip,
            )
            await uow.commit()
        self._mail.outbox.wake()
        return await self._user(principal)

    # -- deletion and export ------------------------------------------------------------

    async def delete_account(self, principal: Principal, password: str, client: ClientInfo) -> None:
        """Removes the account and its personal data; the audit keeps the bare user id."""
        require_fresh_login(principal)
        user = await self._user(principal)
        await self._reauthenticate(user, password, client)
        now = utcnow()
        async with self._uow_factory() as uow:
            # The last active administrator cannot delete itself (services/admin/guard.py).
            await keep_an_admin(uow, user_id=user.id, now=now)
            ended = await uow.sessions.revoke_all(user.id, now, "account_deleted")
            await uow.users.delete(user.id)
            await self._mail.send(uow, "account_deleted", to=user.email)
            await uow.audit.record("account.deleted", now=now, user_id=user.id, ip=client.ip)
            await uow.commit()
        await self._access_tokens.deny(ended)
        self._mail.outbox.wake()

    async def export(self, principal: Principal) -> AccountData:
        """Everything Keyturn holds about the user."""
        user = await self._user(principal, read=True)
        now = utcnow()
        async with self._read_uow_factory() as uow:
            sessions = await uow.sessions.list_active(
                user.id, now, idle_since=EPOCH, limit=EXPORT_SESSION_LIMIT, after=None
            )
            api_keys = await uow.api_keys.list_for(user.id)
            consents = await uow.consents.page_for(user.id, limit=EXPORT_SESSION_LIMIT, after=None)
            events = await uow.audit.for_user(user.id, limit=EXPORT_AUDIT_LIMIT)
        return AccountData(
            user=user,
            sessions=sessions,
            api_keys=api_keys,
            consents=consents,
            audit_events=events,
        )

    # -- helpers ------------------------------------------------------------------------

    async def _user(self, principal: Principal, *, read: bool = False) -> User:
        async with (self._read_uow_factory if read else self._uow_factory)() as uow:
            user = await uow.users.get(principal.user_id)
        if user is None or user.disabled:
            raise NotFound("The account no longer exists.")
        return user

    async def _reauthenticate(self, user: User, password: str, client: ClientInfo) -> None:
        await reauthenticate(
            self._guard,
            self._hash_pool,
            self._policy,
            user,
            password,
            client,
            event="reauthentication.failed",
        )

    async def _checked_token(
        self, token: str, purpose: Purpose, client: ClientInfo
    ) -> OneTimeToken:
        """``OneTimeTokens.check`` behind the credential gate (per-IP failure throttle)."""
        account = f"one-time-token:{purpose}"
        await self._guard.before(account, client)
        try:
            async with self._uow_factory() as uow:
                return await self._tokens.check(uow, token, purpose, utcnow())
        except OneTimeTokenError:
            await self._guard.failed(
                account, None, client, event=f"{purpose}.failed", factor="token"
            )
            raise
