"""A user's second factors (issue 15): TOTP enrolment and checks, recovery codes, status.

TOTP follows RFC 6238 (see ``keyturn.security.totp``): the seed is sealed with AES-256-GCM
under the key ring (DESIGN.md section 4), bound to its user by the AAD, and every accepted
code moves ``last_used_step`` forward so no code is accepted twice (RFC 6238 section 5.2).

An enrolment is pending until the first right code confirms it; an unconfirmed one expires
after ``PENDING_TTL``. Expired rows are deleted by a periodic job
(``MfaFactors.prune_pending``, scheduled in ``keyturn.app``) and, for the user at hand,
when a confirmation finds its own enrolment expired.

Changes to factors need a recent sign-in (``RecentSignIn``); the two methods the login's
enrolment step calls instead work inside the caller's unit of work (``*_in``, ``check_totp``,
``redeem_recovery_code``): they queue mail and audit there and the caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyturn.domain import ClientInfo, Principal, User, utcnow
from keyturn.domain_mfa import MfaStatus, TotpFactor
from keyturn.errors import FactorAlreadyEnrolled, FactorNotEnrolled, MfaCodeInvalid, NotFound
from keyturn.security import totp
from keyturn.security.aead import Aead
from keyturn.services.accounts import AccountMail, CredentialGuard, RecentSignIn
from keyturn.services.admin import Authorizer
from keyturn.services.mfa.factor_admin import reseal_seeds, reset_factors, seed_aad, statuses
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

PENDING_TTL = timedelta(minutes=10)
TOTP_FACTOR = "An authenticator app"
# RFC 8176 section 2: "otp", the factor name the throttle's audit rows carry.
_AMR_OTP = "otp"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What the user's authenticator app needs, shown once while the enrolment is pending."""

    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class TotpConfirmed:
    """A confirmed enrolment; ``recovery_codes`` when it was the account's first factor."""

    recovery_codes: list[str] | None


class MfaFactors:
    """The user's own factors, the login's TOTP and recovery-code checks, admin reset."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        read_uow_factory: UnitOfWorkFactory,
        aead: Aead,
        recovery_codes: RecoveryCodes,
        recent_sign_in: RecentSignIn,
        guard: CredentialGuard,
        mail: AccountMail,
        authorizer: Authorizer,
        issuer_name: str,
    ) -> None:
        self._uow_factory = uow_factory
        self._read_uow_factory = read_uow_factory
        self._aead = aead
        self._recovery_codes = recovery_codes
        self._recent_sign_in = recent_sign_in
        self._guard = guard
        self._mail = mail
        self._authorizer = authorizer
        self._issuer_name = issuer_name

    async def status(self, principal: Principal) -> MfaStatus:
        """The caller's factors (never a secret)."""
        async with self._read_uow_factory() as uow:
            return await uow.mfa.status(principal.user_id)

    async def begin_totp(self, principal: Principal, client: ClientInfo) -> TotpEnrolment:
        """Starts (or restarts) a TOTP enrolment for the signed-in caller.

        Raises:
            FreshLoginRequired: The caller is an API key.
            ReauthenticationRequired: The session's sign-in is not recent.
            FactorAlreadyEnrolled: A confirmed TOTP factor exists.
        """
        await self._recent_sign_in.require(principal)
        return await self._begin(principal.user_id, client)

    async def begin_totp_during_login(
        self, user_id: uuid.UUID, client: ClientInfo | None = None
    ) -> TotpEnrolment:
        """``begin_totp`` for the login's enrolment step: the caller proved the password
        through an ``mfa_token``, so no session (and no recent sign-in) exists yet."""
        return await self._begin(user_id, client or ClientInfo())

    async def _begin(self, user_id: uuid.UUID, client: ClientInfo) -> TotpEnrolment:
        secret = totp.new_secret()
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await _user(uow, user_id)
            pending = TotpFactor(
                user_id=user_id,
                sealed_secret=self._aead.encrypt(secret.encode("ascii"), aad=seed_aad(user_id)),
                created_at=now,
                confirmed_at=None,
                last_used_step=None,
            )
            # One conditional upsert: it never overwrites a confirmed factor.
            if not await uow.totp.put_pending(pending):
                raise FactorAlreadyEnrolled("Remove the authenticator app first.")
            await uow.audit.record(
                "mfa.totp_enrolment_started",
                now=now,
                user_id=user_id,
                ip=client.ip,
                data={"factor": _AMR_OTP},
            )
            await uow.commit()
        uri = totp.provisioning_uri(secret, user.email, self._issuer_name)
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))

    async def confirm_totp(
        self, principal: Principal, code: str, client: ClientInfo
    ) -> list[str] | None:
        """Confirms the caller's pending enrolment with a code from the app.

        No recent sign-in is asked: starting the enrolment needed one, and the code proves
        the app holds the seed shown then.

        Returns:
            Ten recovery codes when this is the account's first factor, else None.

        Raises:
            FactorNotEnrolled: Nothing pending, or the enrolment expired.
            MfaCodeInvalid: A wrong code (counted like a wrong password).
            RateLimited: Too many failures for this account from this address.
        """
        async with self._read_uow_factory() as uow:
            user = await _user(uow, principal.user_id)
        await self._guard.before(user.email, client)
        now = utcnow()
        async with self._uow_factory() as uow:
            try:
                confirmed = (
                    None
                    if user.locked(now)
                    else await self.confirm_totp_in(uow, user, code, now, client=client)
                )
            except FactorNotEnrolled:
                # Only an expired enrolment's deletion is written so far: keep it.
                await uow.commit()
                raise
            if confirmed is not None:
                await uow.commit()
        if confirmed is None:
            await self._guard.failed(
                user.email, user, client, event="mfa.totp_confirm_failed", factor=_AMR_OTP
            )
            raise MfaCodeInvalid
        self._mail.outbox.wake()
        return confirmed.recovery_codes

    async def confirm_totp_in(
        self,
        uow: UnitOfWork,
        user: User,
        code: str,
        now: datetime,
        *,
        client: ClientInfo | None = None,
    ) -> TotpConfirmed | None:
        """Confirms ``user``'s pending enrolment inside the caller's unit of work.

        The mail and the audit row are queued in ``uow``; the caller commits (then calls
        ``wake_mail``). No throttling here: the caller counts a None.

        Returns:
            None for a wrong or malformed code (nothing written), else the confirmation.

        Raises:
            FactorNotEnrolled: Nothing pending, or it expired (its row is deleted in
                ``uow``).
        """
        factor = await uow.totp.get(user.id)
        if factor is None or factor.confirmed_at is not None:
            raise FactorNotEnrolled("Start the authenticator app set-up first.")
        if factor.created_at < now - PENDING_TTL:
            await uow.totp.delete_pending(created_before=now - PENDING_TTL)
            raise FactorNotEnrolled("The set-up expired; start it again.")
        step = totp.matching_step(self._seed(factor), code, now)
        if step is None:
            return None
        first = not (await uow.mfa.status(user.id)).enabled
        # Conditional on ``confirmed_at IS NULL``: of two racing confirmations one wins.
        if not await uow.totp.confirm(user.id, step=step, now=now):
            raise FactorNotEnrolled("The set-up is no longer pending.")
        codes = await self._recovery_codes.issue(uow, user.id, now) if first else None
        await self._mail.send(uow, "mfa_factor_added", to=user.email, factor=TOTP_FACTOR)
        await uow.audit.record(
            "mfa.totp_enabled",
            now=now,
            user_id=user.id,
            ip=client.ip if client else None,
            data={"factor": _AMR_OTP, "recovery_codes_issued": codes is not None},
        )
        return TotpConfirmed(recovery_codes=codes)

    async def check_totp(
        self, uow: UnitOfWork, user_id: uuid.UUID, code: str, now: datetime
    ) -> bool:
        """Whether ``code`` is a fresh code of the user's confirmed factor; consumes it.

        RFC 6238 section 5.2: one step of drift each way, and a code (a step) is accepted
        once; ``use_step`` is one conditional UPDATE, so of two racing uses one wins. No
        throttling here: the caller counts a False.
        """
        factor = await uow.totp.get(user_id)
        if factor is None or factor.confirmed_at is None:
            return False
        step = totp.matching_step(self._seed(factor), code, now)
        if step is None:
            return False
        if factor.last_used_step is not None and step <= factor.last_used_step:
            return False  # replay, or a code older than the last one used
        return await uow.totp.use_step(user_id, step)

    async def redeem_recovery_code(
        self,
        uow: UnitOfWork,
        user: User,
        code: str,
        now: datetime,
        *,
        client: ClientInfo | None = None,
    ) -> bool:
        """Uses up one recovery code in the caller's unit of work (True once per code).

        On success the owner's mail (codes left) and the audit row are queued in ``uow``.
        """
        if not await self._recovery_codes.redeem(uow, user.id, code, now):
            return False
        left = await uow.recovery_codes.count_left(user.id)
        await self._mail.send(uow, "mfa_recovery_code_used", to=user.email, codes_left=str(left))
        await uow.audit.record(
            "mfa.recovery_code_used",
            now=now,
            user_id=user.id,
            ip=client.ip if client else None,
            data={"factor": "recovery_code", "codes_left": left},
        )
        return True

    def wake_mail(self) -> None:
        """Tells the outbox a mail is waiting (after the caller's commit)."""
        self._mail.outbox.wake()

    async def remove_totp(self, principal: Principal, client: ClientInfo) -> None:
        """Removes the caller's TOTP factor; the recovery codes go with the last factor.

        Raises:
            ReauthenticationRequired: The session's sign-in is not recent.
            FactorNotEnrolled: No confirmed TOTP factor.
        """
        await self._recent_sign_in.require(principal)
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await _user(uow, principal.user_id)
            factor = await uow.totp.get(user.id)
            if factor is None or factor.confirmed_at is None:
                raise FactorNotEnrolled("No authenticator app is set up.")
            await uow.totp.delete(user.id)
            if not (await uow.mfa.status(user.id)).enabled:
                # Without a factor a recovery code would stand in for nothing.
                await uow.recovery_codes.delete_all(user.id)
            await self._mail.send(uow, "mfa_factor_removed", to=user.email, factor=TOTP_FACTOR)
            await _audit(uow, "mfa.totp_disabled", principal, client, now, factor=_AMR_OTP)
            await uow.commit()
        self._mail.outbox.wake()

    async def regenerate_recovery_codes(
        self, principal: Principal, client: ClientInfo
    ) -> list[str]:
        """A new set of ten recovery codes; the old ones stop working.

        Raises:
            ReauthenticationRequired: The session's sign-in is not recent.
            FactorNotEnrolled: The account has no second factor.
        """
        await self._recent_sign_in.require(principal)
        now = utcnow()
        async with self._uow_factory() as uow:
            user = await _user(uow, principal.user_id)
            if not (await uow.mfa.status(user.id)).enabled:
                raise FactorNotEnrolled("Set up a second factor first.")
            codes = await self._recovery_codes.issue(uow, user.id, now)
            await self._mail.send(uow, "mfa_recovery_codes_regenerated", to=user.email)
            await _audit(uow, "mfa.recovery_codes_regenerated", principal, client, now, factor=None)
            await uow.commit()
        self._mail.outbox.wake()
        return codes

    async def prune_pending(self) -> int:
        """Deletes enrolments left unconfirmed past ``PENDING_TTL`` (periodic job)."""
        async with self._uow_factory() as uow:
            deleted = await uow.totp.delete_pending(created_before=utcnow() - PENDING_TTL)
            await uow.commit()
        return deleted

    async def reseal(self) -> tuple[int, int]:
        """Re-encrypts every TOTP seed under the first ring key (``keyturn secret rotate``);
        idempotent. Returns (re-encrypted, already current).

        Raises:
            DecryptionError: A seed is sealed under a ring key that is no longer configured.
        """
        return await reseal_seeds(self._uow_factory, self._aead)

    async def reset_by_admin(
        self, actor: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        """Deletes every factor of ``user_id`` (TOTP, recovery codes, passkeys) [users:write].

        Raises:
            PermissionDenied: The actor lacks ``users:write``.
            NotFound: No such user.
            TargetOutranksCaller: The user holds a permission the actor does not.
        """
        await reset_factors(
            actor,
            user_id,
            client,
            uow_factory=self._uow_factory,
            authorizer=self._authorizer,
            mail=self._mail,
        )

    async def status_of(self, actor: Principal, user_id: uuid.UUID) -> MfaStatus:
        """Another user's factors, for the admin user object [users:read]."""
        return (await self.statuses_of(actor, [user_id]))[user_id]

    async def statuses_of(
        self, actor: Principal, user_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, MfaStatus]:
        """Several users' factors in one unit of work [users:read]."""
        return await statuses(
            actor, user_ids, read_uow_factory=self._read_uow_factory, authorizer=self._authorizer
        )

    def _seed(self, factor: TotpFactor) -> str:
        return self._aead.decrypt(factor.sealed_secret, aad=seed_aad(factor.user_id)).decode(
            "ascii"
        )


async def _user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    user = await uow.users.get(user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def _audit(
    uow: UnitOfWork,
    event: str,
    principal: Principal,
    client: ClientInfo,
    now: datetime,
    *,
    factor: str | None,
) -> None:
    await uow.audit.record(
        event,
        now=now,
        user_id=principal.user_id,
        session_id=principal.session_id,
        ip=client.ip,
        data={"factor": factor} if factor else {},
    )
