"""Builds the MFA services from the settings and the adapters ``keyturn.app`` made."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.config import Settings
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices
from keyturn.services.mfa.passkeys import PasskeyService
from keyturn.services.mfa.ports import CeremonyStore
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.mfa.webauthn_ceremony import RelyingParty
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class MfaServices:
    recovery_codes: RecoveryCodes
    passkeys: PasskeyService


def build_mfa(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    key_ring: KeyRing,
    aead: Aead,
    accounts: AccountServices,
    ceremonies: CeremonyStore,
) -> MfaServices:
    del aead  # the TOTP factor uses it
    recovery_codes = RecoveryCodes(key_ring=key_ring)
    passkeys = PasskeyService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        ceremonies=ceremonies,
        relying_party=relying_party(settings),
        accounts=accounts,
        recovery_codes=recovery_codes,
    )
    return MfaServices(recovery_codes=recovery_codes, passkeys=passkeys)


def relying_party(settings: Settings) -> RelyingParty:
    """The WebAuthn relying party: ``KEYTURN_WEBAUTHN_*``, else the issuer's host and origin."""
    return RelyingParty.for_issuer(
        settings.issuer,
        rp_id=settings.webauthn_rp_id,
        origins=settings.webauthn_origins,
        name=settings.brand_name,
        user_verification=settings.webauthn_user_verification,
    )
