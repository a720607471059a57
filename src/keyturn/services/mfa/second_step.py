"""The second step of a login (issue 15): ``POST /v1/auth/mfa/verify`` and ``/ui/mfa``.

A right password with a factor enrolled (or a role that demands one) answers an
``mfa_token`` (``keyturn.services.accounts.MfaGate``). This module redeems it:

- the token must be live, of purpose ``mfa_login`` and of the channel that began the login
  (a hosted-page token never finishes a JSON login, nor the reverse);
- a wrong code counts three ways: on the token (5 and it dies), and in the password
  throttle and lockout of the account (per account+IP, per account: DESIGN.md section 5),
  so guessing a 6-digit code hits a limit long before 10^6 tries; every failure is audited;
- the token is used up in the same transaction that uses up the TOTP step or recovery code
  (one of two racing requests wins), and the session opens under the ``session_epoch`` the
  password check read: a password change, reset or "end all sessions" in between kills it.

The ``mfa_token`` is nothing else: no route takes it as a bearer credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyturn.domain import ClientInfo, OneTimeToken, Session, TokenPair, User, utcnow
from keyturn.domain_mfa import AMR_PASSWORD, Method, MfaChallenge
from keyturn.errors import (
    FactorNotEnrolled,
    MfaCodeInvalid,
    MfaTokenInvalid,
    OneTimeTokenError,
    WebAuthnRejected,
)
from keyturn.services.accounts import (
    MFA_MAX_WRONG_CODES,
    AccountMail,
    AuthService,
    CredentialGuard,
    OneTimeTokens,
    Purpose,
)
from keyturn.services.mfa.passkeys import SECOND_FACTOR, PasskeyService
from keyturn.services.mfa.totp import MfaFactors, TotpEnrolment
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

# Failures before the token names an account are counted per client IP under this key.
MFA_TOKEN_ACCOUNT = "mfa-token"  # noqa: S105  (a throttle key, not a secret)
# RFC 8176 section 2: a one-time code (TOTP or recovery code) with the password.
_AMR_CODE = ("otp", "mfa")


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a second step: a method and its code or WebAuthn credential."""

    method: Method
    code: str | None
    credential: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Pending:
    token: OneTimeToken
    user: User

    @property
    def epoch(self) -> int:
        return int(self.token.data.get("epoch", "-1"))

    @property
    def enrolling(self) -> bool:
        return bool(self.token.data.get("enrol"))


class SecondStep:
    """Redeems ``mfa_token``s for the JSON API (``verify``) and the hosted pages."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        tokens: OneTimeTokens,
        auth: AuthService,
        guard: CredentialGuard,
        mail: AccountMail,
        factors: MfaFactors,
        passkeys: PasskeyService,
    ) -> None:
        self._uow_factory = uow_factory
        self._tokens = tokens
        self._auth = auth
        self._guard = guard
        self._mail = mail
        self._factors = factors
        self._passkeys = passkeys

    async def describe(
        self, mfa_token: str, client: ClientInfo, *, channel: str = "ui"
    ) -> MfaChallenge:
        """The methods a live token can still be answered with (nothing used up)."""
        pending = await self._pending(mfa_token, channel, client)
        async with self._uow_factory() as uow:
            status = await uow.mfa.status(pending.user.id)
        remaining = pending.token.expires_at - utcnow()
        return MfaChallenge(
            mfa_token=mfa_token,
            methods=(Method.TOTP,) if pending.enrolling else status.methods,
            expires_in=max(0, int(remaining.total_seconds())),
            enrolment_required=pending.enrolling,
        )

    async def begin_enrolment(
        self, mfa_token: str, client: ClientInfo, *, channel: str = "ui"
    ) -> TotpEnrolment:
        """A TOTP enrolment for a login whose role demands a factor (policy)."""
        pending = await self._pending(mfa_token, channel, client)
        if not pending.enrolling:
            raise FactorNotEnrolled("This sign-in does not set up a factor.")
        return await self._factors.begin_totp_during_login(pending.user.id, client)

    async def webauthn_options(
        self, mfa_token: str, client: ClientInfo, *, channel: str = "ui"
    ) -> dict[str, Any]:
        """Request options for the user's passkeys, bound to this token (single use)."""
        pending = await self._pending(mfa_token, channel, client)
        async with self._uow_factory() as uow:
            status = await uow.mfa.status(pending.user.id)
        if pending.enrolling or not status.passkeys:
            raise FactorNotEnrolled("This account has no passkey.")
        return await self._passkeys.request_options(
            purpose=SECOND_FACTOR, user_id=pending.user.id, binding=str(pending.token.id)
        )

    async def verify(
        self, mfa_token: str, answer: Answer, client: ClientInfo
    ) -> tuple[TokenPair, list[str] | None]:
        """Finishes a JSON login: the token pair, and recovery codes of an enrolment."""
        pending, amr, codes = await self._prove(mfa_token, answer, client, channel="api")
        pair = await self._auth.finish_sign_in(
            pending.user.id, client, amr=amr, epoch=pending.epoch
        )
        return pair, codes

    async def verify_browser(
        self,
        mfa_token: str,
        method: Method,
        *,
        code: str | None,
        credential: Mapping[str, Any] | None,
        client: ClientInfo,
    ) -> tuple[Session, list[str] | None]:
        """Finishes a hosted-page login: the browser session (no tokens)."""
        answer = Answer(method=method, code=code, credential=credential)
        pending, amr, codes = await self._prove(mfa_token, answer, client, channel="ui")
        session = await self._auth.finish_browser_sign_in(
            pending.user.id, client, amr=amr, epoch=pending.epoch
        )
        return session, codes

    async def _prove(
        self, mfa_token: str, answer: Answer, client: ClientInfo, *, channel: str
    ) -> tuple[_Pending, tuple[str, ...], list[str] | None]:
        pending = await self._pending(mfa_token, channel, client)
        # The same gate as the password: a throttled account+IP gets 429 before any check.
        await self._guard.before(pending.user.email, client)
        if answer.method is Method.WEBAUTHN:
            return pending, await self._prove_passkey(pending, answer, client), None
        if answer.code is None:
            raise MfaCodeInvalid("Send the code.")
        now = utcnow()
        async with self._uow_factory() as uow:
            codes: list[str] | None = None
            if pending.enrolling:
                if answer.method is not Method.TOTP:
                    raise FactorNotEnrolled("Set up the authenticator app first.")
                confirmed = await self._factors.confirm_totp_in(
                    uow, pending.user, answer.code, now, client=client
                )
                ok = confirmed is not None
                codes = confirmed.recovery_codes if confirmed is not None else None
            elif answer.method is Method.TOTP:
                ok = await self._factors.check_totp(uow, pending.user.id, answer.code, now)
            else:
                ok = await self._factors.redeem_recovery_code(
                    uow, pending.user, answer.code, now, client=client
                )
            if ok:
                await self._use_up(uow, pending, now)
                await uow.commit()
        if not ok:
            await self._wrong(pending, client, answer.method)
        self._mail.outbox.wake()
        return pending, (*AMR_PASSWORD, *_AMR_CODE), codes

    async def _prove_passkey(
        self, pending: _Pending, answer: Answer, client: ClientInfo
    ) -> tuple[str, ...]:
        if answer.credential is None or pending.enrolling:
            raise MfaCodeInvalid("Send the passkey's answer.")
        try:
            use = await self._passkeys.verify_assertion(
                answer.credential,
                purpose=SECOND_FACTOR,
                user_id=pending.user.id,
                binding=str(pending.token.id),
                client=client,
            )
        except WebAuthnRejected as exc:
            # The passkey service counted and audited the failure; the token counts it too.
            await self._burn_one(pending)
            raise MfaCodeInvalid(exc.detail) from exc
        now = utcnow()
        async with self._uow_factory() as uow:
            await self._use_up(uow, pending, now)
            await uow.commit()
        return (*AMR_PASSWORD, *use.amr, "mfa")

    async def _use_up(self, uow: UnitOfWork, pending: _Pending, now: datetime) -> None:
        if not await uow.one_time_tokens.consume(pending.token.id, now):
            # Another request with the same token won: this one never signs in.
            raise MfaTokenInvalid("This sign-in step was already used.")

    async def _wrong(self, pending: _Pending, client: ClientInfo, method: Method) -> None:
        await self._burn_one(pending)
        await self._guard.failed(
            pending.user.email, pending.user, client, event="mfa.failed", factor=method.value
        )
        raise MfaCodeInvalid

    async def _burn_one(self, pending: _Pending) -> None:
        async with self._uow_factory() as uow:
            await uow.one_time_tokens.fail(pending.token.id, utcnow(), limit=MFA_MAX_WRONG_CODES)
            await uow.commit()

    async def _pending(self, mfa_token: str, channel: str, client: ClientInfo) -> _Pending:
        """The live token and its user, or MfaTokenInvalid (counted per IP)."""
        await self._guard.before(MFA_TOKEN_ACCOUNT, client)
        now = utcnow()
        async with self._uow_factory() as uow:
            try:
                token = await self._tokens.check(uow, mfa_token, Purpose.MFA_LOGIN, now)
            except OneTimeTokenError:
                token = None
            user = await uow.users.get(token.user_id) if token is not None else None
        if (
            token is None
            or user is None
            or token.data.get("channel") != channel
            or user.disabled
            or user.locked(now)
            or user.session_epoch != int(token.data.get("epoch", "-1"))
        ):
            await self._guard.failed(
                MFA_TOKEN_ACCOUNT, None, client, event="mfa.token_refused", factor="mfa_token"
            )
            raise MfaTokenInvalid
        return _Pending(token=token, user=user)
