"""Whether a login needs a second step, and the ``mfa_token`` that carries it (issue 15).

The password check (``authentication``) asks :class:`MfaGate` before it opens a session.
The token is a one-time token of purpose ``mfa_login`` (DESIGN.md section 4): 256 random
bits, only its digest stored, bound to the user, to the channel that began the login (JSON
API or hosted page) and to the account's ``session_epoch`` as the password check read it,
so a password change, reset or "end all sessions" in between kills it. It expires in 5
minutes and dies after 5 wrong codes; ``keyturn.services.mfa`` redeems it.
"""

from __future__ import annotations

from keyturn.domain import ClientInfo, User, utcnow
from keyturn.domain_mfa import Method, MfaChallenge, MfaStatus
from keyturn.services.accounts.one_time_tokens import OneTimeTokens, Purpose
from keyturn.services.ports import UnitOfWorkFactory

MFA_TOKEN_TTL = 300
MFA_MAX_WRONG_CODES = 5


class MfaGate:
    """Implements ``SecondFactorGate``: factors enrolled, or a role that demands one."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        tokens: OneTimeTokens,
        required_roles: frozenset[str],
    ) -> None:
        self._uow_factory = uow_factory
        self._tokens = tokens
        self._required_roles = required_roles

    def enrolment_required(self, user: User) -> bool:
        """The user holds a role of ``KEYTURN_MFA_REQUIRED_ROLES``."""
        return not self._required_roles.isdisjoint(user.roles)

    async def challenge(
        self, user: User, status: MfaStatus, client: ClientInfo, *, channel: str
    ) -> MfaChallenge | None:
        # ``status`` came with the user in the password check's one read: only a login
        # that needs a second step touches the database here. A factor enrolled while the
        # password was being hashed is not seen; the login then ends as one that finished
        # just before the enrolment would (enrolling ends no session).
        enrol = not status.enabled and self.enrolment_required(user)
        if not status.enabled and not enrol:
            return None
        now = utcnow()
        async with self._uow_factory() as uow:
            token = await self._tokens.issue(
                uow,
                user_id=user.id,
                purpose=Purpose.MFA_LOGIN,
                now=now,
                ttl=MFA_TOKEN_TTL,
                data={
                    "channel": channel,
                    "epoch": str(user.session_epoch),
                    "enrol": "1" if enrol else "",
                },
            )
            await uow.audit.record(
                "login.second_step_required",
                now=now,
                user_id=user.id,
                ip=client.ip,
                data={"factor": "pwd", "channel": channel, "enrol": enrol},
            )
            await uow.commit()
        return MfaChallenge(
            mfa_token=token,
            # A factor to set up: TOTP is the one the JSON API enrols during a login.
            methods=(Method.TOTP,) if enrol else status.methods,
            expires_in=MFA_TOKEN_TTL,
            enrolment_required=enrol,
        )
