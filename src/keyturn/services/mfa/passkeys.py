"""Passkeys (issue 15): WebAuthn registration, management, and assertions for a login's
second step and for a passwordless sign-in (W3C WebAuthn Level 3).

A ceremony's challenge (32 random bytes) is kept in the shared ``CeremonyStore`` under a
digest of itself, with what it was issued for (purpose, user, binding), for 5 minutes. A
response names its challenge in ``clientDataJSON``; it is taken out of the store (single
use, on any replica) and must have been issued for the same purpose, user and binding
before the response is verified against it (section 13.4.3).
"""

from __future__ import annotations

import builtins
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.domain import ClientInfo, Principal, User, utcnow
from keyturn.domain_mfa import Passkey
from keyturn.errors import (
    AuthenticationFailed,
    FactorAlreadyEnrolled,
    NotFound,
    ServiceUnavailable,
    StoreUnavailable,
)
from keyturn.services.accounts import AccountServices
from keyturn.services.mfa.ports import CeremonyStore
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.mfa.webauthn_ceremony import (
    CHALLENGE_BYTES,
    CHALLENGE_TTL,
    Rejected,
    RelyingParty,
    challenge_key,
    client_challenge,
    creation_options,
    credential_id,
    request_options,
    user_handle,
    verify_assertion,
    verify_registration,
)
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

SECOND_FACTOR = "second_factor"
PASSWORDLESS = "passwordless"
_REGISTRATION = "registration"
# A failed passwordless assertion may name no account: counted per client IP, like an
# unknown refresh token (authentication.REFRESH_ACCOUNT).
PASSKEY_ACCOUNT = "passkey"
DEFAULT_NAME = "Passkey"
_STORE_DOWN = "Passkeys are unavailable for a moment (shared store unreachable); retry."
_NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class PasskeyRegistered:
    passkey: Passkey
    # A fresh set when this passkey is the account's first factor; shown once.
    recovery_codes: list[str] | None


@dataclass(frozen=True, slots=True)
class PasskeyUse:
    """A verified assertion: whose passkey, and the RFC 8176 amr values it proves."""

    user_id: uuid.UUID
    passkey_id: uuid.UUID
    amr: tuple[str, ...]
    user_verified: bool


@dataclass(frozen=True, slots=True)
class _Ceremony:
    purpose: str
    user_id: str | None
    binding: str | None

    def encode(self) -> bytes:
        return json.dumps(
            {"purpose": self.purpose, "user_id": self.user_id, "binding": self.binding}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Ceremony:
        value = json.loads(raw)
        return cls(purpose=value["purpose"], user_id=value["user_id"], binding=value["binding"])


def _name(name: str | None) -> str:
    cleaned = " ".join((name or "").split())[:_NAME_MAX]
    return cleaned or DEFAULT_NAME


class PasskeyService:
    """Registers, lists, renames and removes passkeys, and verifies their assertions."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        read_uow_factory: UnitOfWorkFactory,
        ceremonies: CeremonyStore,
        relying_party: RelyingParty,
        accounts: AccountServices,
        recovery_codes: RecoveryCodes,
    ) -> None:
        self._uow_factory = uow_factory
        self._read_uow_factory = read_uow_factory
        self._ceremonies = ceremonies
        self._rp = relying_party
        self._accounts = accounts
        self._recovery_codes = recovery_codes

    # --- ceremony state --------------------------------------------------------------

    async def _begin(self, ceremony: _Ceremony) -> bytes:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        try:
            await self._ceremonies.put(
                challenge_key(challenge), ceremony.encode(), ttl_seconds=CHALLENGE_TTL
            )
        except StoreUnavailable as exc:
            raise ServiceUnavailable(_STORE_DOWN) from exc
        return challenge

    async def _take(self, credential: Mapping[str, Any], expected: _Ceremony) -> bytes:
        """The response's challenge, taken (once) and checked against what it was for."""
        challenge = client_challenge(credential)
        if challenge is None:
            raise Rejected("challenge", "The response carries no challenge.")
        try:
            stored = await self._ceremonies.take(challenge_key(challenge))
        except StoreUnavailable as exc:
            # Without the store no challenge can be checked: unavailable, never accepted.
            raise ServiceUnavailable(_STORE_DOWN) from exc
        if stored is None:
            raise Rejected("challenge", "The challenge is unknown, expired or already used.")
        if _Ceremony.decode(stored) != expected:
            raise Rejected("challenge", "The challenge was issued for another ceremony.")
        return challenge

    # --- registration (section 7.1) -----------------------------------------------------

    async def registration_options(
        self, principal: Principal, client: ClientInfo
    ) -> dict[str, Any]:
        """Creation options for a new passkey of the caller (recent sign-in needed)."""
        del client  # same signature as the other writes; nothing is written here
        await self._accounts.recent_sign_in.require(principal)
        async with self._read_uow_factory() as uow:
            user = await self._user(uow, principal.user_id)
            existing = await uow.passkeys.list_for(user.id)
        challenge = await self._begin(self._registration(principal))
        return creation_options(
            self._rp,
            challenge=challenge,
            user_id=user.id.bytes,
            user_name=user.email,
            display_name=user.name or user.email,
            exclude=existing,
        )

    @staticmethod
    def _registration(principal: Principal) -> _Ceremony:
        # Bound to the session that asked: another session of the user cannot finish it.
        return _Ceremony(_REGISTRATION, str(principal.user_id), str(principal.session_id))

    async def register(
        self,
        principal: Principal,
        credential: Mapping[str, Any],
        name: str | None,
        client: ClientInfo,
    ) -> PasskeyRegistered:
        """Verifies a creation response and stores the passkey.

        Raises:
            ReauthenticationRequired: No recent sign-in (an API key never qualifies).
            WebAuthnRejected: A check failed (``detail`` says which).
            FactorAlreadyEnrolled: This credential is registered already.
        """
        await self._accounts.recent_sign_in.require(principal)
        challenge = await self._take(credential, self._registration(principal))
        new = verify_registration(
            self._rp, credential, challenge=challenge, require_uv=self._rp.uv_required
        )
        now = utcnow()
        passkey = Passkey(
            id=uuid.uuid4(),
            user_id=principal.user_id,
            credential_id=new.credential_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
            transports=new.transports,
            name=_name(name),
            aaguid=new.aaguid,
            backup_eligible=new.backup_eligible,
            backed_up=new.backed_up,
            created_at=now,
            last_used_at=None,
        )
        async with self._uow_factory() as uow:
            user = await self._user(uow, principal.user_id)
            before = await uow.mfa.status(user.id)
            if not await uow.passkeys.add(passkey):
                raise FactorAlreadyEnrolled("This passkey is registered already.")
            codes = None
            if not before.enabled:
                codes = await self._recovery_codes.issue(uow, user.id, now)
            await self._accounts.mail.send(
                uow, "mfa_factor_added", to=user.email, factor=f"A passkey ({passkey.name})"
            )
            await uow.audit.record(
                "mfa.passkey_added",
                now=now,
                user_id=user.id,
                session_id=principal.session_id,
                ip=client.ip,
                data={"passkey_id": str(passkey.id), "first_factor": codes is not None},
            )
            await uow.commit()
        self._accounts.mail.outbox.wake()
        return PasskeyRegistered(passkey=passkey, recovery_codes=codes)

    # --- management ---------------------------------------------------------------------

    async def list(self, principal: Principal) -> builtins.list[Passkey]:
        """The caller's passkeys, oldest first."""
        async with self._read_uow_factory() as uow:
            return await uow.passkeys.list_for(principal.user_id)

    async def rename(self, principal: Principal, passkey_id: uuid.UUID, name: str) -> Passkey:
        """Renames one of the caller's passkeys.

        Raises:
            NotFound: No such passkey of the caller (another user's id answers the same).
        """
        async with self._uow_factory() as uow:
            if not await uow.passkeys.rename(passkey_id, principal.user_id, _name(name)):
                raise NotFound("No such passkey.")
            passkey = await uow.passkeys.get(passkey_id, principal.user_id)
            await uow.commit()
        if passkey is None:  # deleted by a racing request after the rename
            raise NotFound("No such passkey.")
        return passkey

    async def remove(self, principal: Principal, passkey_id: uuid.UUID, client: ClientInfo) -> None:
        """Removes one of the caller's passkeys (recent sign-in needed); with the last
        factor gone, the recovery codes go too.

        Raises:
            ReauthenticationRequired: No recent sign-in.
            NotFound: No such passkey of the caller.
        """
        await self._accounts.recent_sign_in.require(principal)
        now = utcnow()
        async with self._uow_factory() as uow:
            passkey = await uow.passkeys.get(passkey_id, principal.user_id)
            if passkey is None or not await uow.passkeys.delete(passkey_id, principal.user_id):
                raise NotFound("No such passkey.")
            user = await self._user(uow, principal.user_id)
            if not (await uow.mfa.status(user.id)).enabled:
                await uow.recovery_codes.delete_all(user.id)
            await self._accounts.mail.send(
                uow, "mfa_factor_removed", to=user.email, factor=f"A passkey ({passkey.name})"
            )
            await uow.audit.record(
                "mfa.passkey_removed",
                now=now,
                user_id=user.id,
                session_id=principal.session_id,
                ip=client.ip,
                data={"passkey_id": str(passkey.id)},
            )
            await uow.commit()
        self._accounts.mail.outbox.wake()

    # --- assertions (section 7.2) -------------------------------------------------------

    async def request_options(
        self, *, purpose: str, user_id: uuid.UUID | None, binding: str | None = None
    ) -> dict[str, Any]:
        """Request options for a second step (the user's passkeys allowed) or a
        passwordless sign-in (no user yet: any discoverable passkey, verification required).
        """
        allow: builtins.list[Passkey] = []
        if purpose == SECOND_FACTOR:
            if user_id is None:
                raise ValueError("a second step names its user")
            async with self._read_uow_factory() as uow:
                allow = await uow.passkeys.list_for(user_id)
            verification = self._rp.user_verification
        elif purpose == PASSWORDLESS:
            if user_id is not None:
                raise ValueError("a passwordless sign-in names no user")
            verification = "required"
        else:
            raise ValueError(f"unknown purpose {purpose!r}")
        ceremony = _Ceremony(purpose, None if user_id is None else str(user_id), binding)
        challenge = await self._begin(ceremony)
        return request_options(
            self._rp, challenge=challenge, allow=allow, user_verification=verification
        )

    async def verify_assertion(
        self,
        credential: Mapping[str, Any],
        *,
        purpose: str,
        user_id: uuid.UUID | None,
        binding: str | None,
        client: ClientInfo,
    ) -> PasskeyUse:
        """Verifies an assertion for ``purpose``, counted and audited like a password.

        Raises:
            RateLimited: Too many failures for this account (or IP) already.
            WebAuthnRejected: A check failed (second factor; ``detail`` says which).
            AuthenticationFailed: Any failure of a passwordless sign-in (no enumeration).
        """
        raw_id = credential_id(credential)
        async with self._read_uow_factory() as uow:
            passkey = None if raw_id is None else await uow.passkeys.find(raw_id)
            owner = user_id if user_id is not None else (passkey.user_id if passkey else None)
            user = None if owner is None else await uow.users.get(owner)
        # The owner's account is counted when known, as for a password; else the IP.
        account = user.email if user is not None else PASSKEY_ACCOUNT
        await self._accounts.guard.before(account, client)
        try:
            return await self._assert(credential, passkey, purpose, user_id, binding)
        except Rejected as rejected:
            await self._accounts.guard.failed(
                account,
                user,
                client,
                event="passkey.assertion_failed",
                factor="passkey",
                data={"check": rejected.check, "purpose": purpose},
            )
            if purpose == PASSWORDLESS:
                # Which check failed would tell a prober whether a credential exists.
                raise AuthenticationFailed from None
            raise

    async def _assert(
        self,
        credential: Mapping[str, Any],
        passkey: Passkey | None,
        purpose: str,
        user_id: uuid.UUID | None,
        binding: str | None,
    ) -> PasskeyUse:
        expected = _Ceremony(purpose, None if user_id is None else str(user_id), binding)
        challenge = await self._take(credential, expected)
        if passkey is None or (user_id is not None and passkey.user_id != user_id):
            raise Rejected("credential", "This passkey is not registered for the account.")
        handle = user_handle(credential)
        # Section 7.2 step 6: a discoverable credential names its user; it must be the owner.
        if (handle is None and user_id is None) or (
            handle is not None and handle != passkey.user_id.bytes
        ):
            raise Rejected("user_handle", "The user handle does not match the passkey.")
        require_uv = purpose == PASSWORDLESS or self._rp.uv_required
        checked = verify_assertion(
            self._rp, credential, passkey, challenge=challenge, require_uv=require_uv
        )
        await self._record_use(passkey, checked.sign_count)
        synced = checked.backup_eligible or checked.backed_up or passkey.backup_eligible
        return PasskeyUse(
            user_id=passkey.user_id,
            passkey_id=passkey.id,
            amr=("swk" if synced else "hwk", "user"),
            user_verified=checked.user_verified,
        )

    async def _record_use(self, passkey: Passkey, new_count: int) -> None:
        """Section 6.1.1: a counter that does not grow hints at a cloned authenticator."""
        stored = passkey.sign_count
        now = utcnow()
        async with self._uow_factory() as uow:
            if (new_count or stored) and new_count <= stored:
                await uow.audit.record(
                    "passkey.counter_regressed",
                    now=now,
                    user_id=passkey.user_id,
                    data={"passkey_id": str(passkey.id), "stored": stored, "received": new_count},
                )
                await uow.commit()
                raise Rejected("counter", "The signature counter went backwards (possible clone).")
            # Compare-and-set: of two racing uses of one counter value, one wins.
            if not await uow.passkeys.record_use(
                passkey.id, old_count=stored, new_count=new_count, now=now
            ):
                raise Rejected("counter", "The passkey was used concurrently.")
            await uow.commit()

    @staticmethod
    async def _user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
        user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("The account no longer exists.")
        return user
