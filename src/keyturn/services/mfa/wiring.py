"""Builds the MFA services from the settings and the adapters ``keyturn.app`` made."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.config import Settings
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices
from keyturn.services.admin import Authorizer
from keyturn.services.mfa.passkeys import PasskeyService
from keyturn.services.mfa.ports import CeremonyStore
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.mfa.second_step import SecondStep
from keyturn.services.mfa.totp import MfaFactors
from keyturn.services.mfa.webauthn_ceremony import RelyingParty
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class MfaServices:
    recovery_codes: RecoveryCodes
    factors: MfaFactors
    passkeys: PasskeyService
    second_step: SecondStep


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
    recovery_codes = RecoveryCodes(key_ring=key_ring)
    factors = MfaFactors(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        aead=aead,
        recovery_codes=recovery_codes,
        recent_sign_in=accounts.recent_sign_in,
        guard=accounts.guard,
        mail=accounts.mail,
        # Stateless (it asks the database each time): the admin package's is the same.
        authorizer=Authorizer(uow_factory=uow_factory),
        issuer_name=settings.brand_name,
    )
    passkeys = PasskeyService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        ceremonies=ceremonies,
        relying_party=relying_party(settings),
        accounts=accounts,
        recovery_codes=recovery_codes,
    )
    second_step = SecondStep(
        uow_factory=uow_factory,
        tokens=accounts.tokens,
        auth=accounts.auth,
        guard=accounts.guard,
        mail=accounts.mail,
        factors=factors,
        passkeys=passkeys,
    )
    return MfaServices(
        recovery_codes=recovery_codes, factors=factors, passkeys=passkeys, second_step=second_step
    )


def relying_party(settings: Settings) -> RelyingParty:
    """The WebAuthn relying party: ``KEYTURN_WEBAUTHN_*``, else the issuer's host and origin."""
    return RelyingParty.for_issuer(
        settings.issuer,
        rp_id=settings.webauthn_rp_id,
        origins=settings.webauthn_origins,
        name=settings.brand_name,
        user_verification=settings.webauthn_user_verification,
    )
