"""Account requests (forgot password, resend verification, email change): queued as one
sealed row of the same shape for any address, so the answer takes the same time whether
the address has an account; the outbox worker resolves them after the answer (issue 12
finding 5)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from keyturn.domain import ClientInfo, User, utcnow
from keyturn.services.accounts.lifecycle_mail import AccountMail, mask_email
from keyturn.services.accounts.one_time_tokens import OneTimeTokens, Purpose
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

FORGOT_PASSWORD = "forgot_password"  # noqa: S105  (an action name, not a secret)
RESEND_VERIFICATION = "resend_verification"
EMAIL_CHANGE = "email_change"


@dataclass(frozen=True, slots=True)
class TokenLifetimes:
    verify_email: int
    reset_password: int
    email_change: int


def barred(user: User) -> bool:
    """Disabled or admin-locked: no recovery token is issued or honoured (finding 2)."""
    return user.disabled or user.admin_locked()


class AccountRequests:
    """Queues the requests and resolves them in the worker's transaction (``RequestResolver``)."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        tokens: OneTimeTokens,
        mail: AccountMail,
        lifetimes: TokenLifetimes,
    ) -> None:
        self._uow_factory = uow_factory
        self._tokens = tokens
        self._mail = mail
        self._lifetimes = lifetimes
        # Per purpose mailed here: how long its link lives and where it points.
        self._link_rules = {
            Purpose.VERIFY_EMAIL: (lifetimes.verify_email, mail.links.verify_email),
            Purpose.RESET_PASSWORD: (lifetimes.reset_password, mail.links.reset_password),
        }

    async def queue(
        self, action: str, *, email: str, client: ClientInfo, user_id: uuid.UUID | None = None
    ) -> None:
        """One sealed request row, the same shape for any address; the worker does the rest."""
        async with self._uow_factory() as uow:
            await self._mail.outbox.enqueue_request(
                uow,
                action=action,
                email=email,
                ip=client.ip or "",
                user_id=str(user_id or ""),
            )
            await uow.commit()
        self._mail.outbox.wake()

    async def resolve(self, uow: UnitOfWork, request: dict[str, str]) -> None:
        """Does a queued request's work in the worker's transaction (``RequestResolver``)."""
        action, email, ip = request["action"], request["email"], request["ip"] or None
        if action == FORGOT_PASSWORD:
            await self._mail_reset(uow, email, ip)
        elif action == RESEND_VERIFICATION:
            await self._mail_verification(uow, email, ip)
        elif action == EMAIL_CHANGE:
            await self._mail_email_change(uow, email, ip, uuid.UUID(request["user_id"]))
        else:
            raise ValueError(f"unknown account request {action!r}")
        # The mails queued here go out in the worker's next round, at once.
        self._mail.outbox.wake()

    async def _mail_verification(self, uow: UnitOfWork, email: str, ip: str | None) -> None:
        now = utcnow()
        user = await uow.users.get_by_email(email)
        if user is None or user.email_verified or barred(user):
            return
        await self._mail_link(uow, user, Purpose.VERIFY_EMAIL, now=now)
        await uow.audit.record("email.verification_sent", now=now, user_id=user.id, ip=ip)

    async def _mail_reset(self, uow: UnitOfWork, email: str, ip: str | None) -> None:
        now = utcnow()
        user = await uow.users.get_by_email(email)
        # An admin-locked or disabled account gets no token (issue 12 finding 2); an
        # automatic lock does not stop it: the reset is the owner's way back (finding 8).
        if user is None or barred(user):
            return
        # Bound to the current password: the token dies when the password changes.
        binding = self._tokens.binding(user.password_hash)
        await self._mail_link(uow, user, Purpose.RESET_PASSWORD, now=now, binding=binding)
        await uow.audit.record("password.reset_requested", now=now, user_id=user.id, ip=ip)

    async def _mail_link(
        self,
        uow: UnitOfWork,
        user: User,
        purpose: Purpose,
        *,
        now: datetime,
        binding: str | None = None,
    ) -> None:
        """Issues a one-time token for ``purpose`` and queues the mail carrying its link
        (the mail template is named like the purpose)."""
        ttl, link = self._link_rules[purpose]
        token = await self._tokens.issue(
            uow, user_id=user.id, purpose=purpose, now=now, ttl=ttl, binding=binding
        )
        await self._mail.send(
            uow,
            purpose.value,
            to=user.email,
            link=self._mail.link(link, token),
            token=token,
            expires_minutes=str(ttl // 60),
        )

    async def _mail_email_change(
        self, uow: UnitOfWork, new_email: str, ip: str | None, user_id: uuid.UUID
    ) -> None:
        now = utcnow()
        user = await uow.users.get(user_id)
        if user is None or barred(user):
            return
        if await uow.users.get_by_email(new_email) is not None:
            # Same answer as a free address; nothing is sent to an address in use.
            await uow.audit.record("email.change_refused", now=now, user_id=user.id, ip=ip)
            return
        token = await self._tokens.issue(
            uow,
            user_id=user.id,
            purpose=Purpose.EMAIL_CHANGE,
            now=now,
            ttl=self._lifetimes.email_change,
            data={"new_email": new_email},
        )
        await self._mail.send(
            uow,
            "email_change_confirm",
            to=new_email,
            link=self._mail.link(self._mail.links.confirm_email, token),
            token=token,
            new_email=new_email,
            expires_minutes=str(self._lifetimes.email_change // 60),
        )
        await self._mail.send(
            uow,
            "email_change_requested",
            to=user.email,
            new_email_masked=mask_email(new_email),
            link_reset=self._mail.link(self._mail.links.forgot_password),
        )
        await uow.audit.record("email.change_requested", now=now, user_id=user.id, ip=ip)
