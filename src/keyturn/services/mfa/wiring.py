"""Builds the MFA services from the settings and the adapters ``keyturn.app`` made."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.config import Settings
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.accounts import AccountServices
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class MfaServices:
    recovery_codes: RecoveryCodes


def build_mfa(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    key_ring: KeyRing,
    aead: Aead,
    accounts: AccountServices,
) -> MfaServices:
    del settings, uow_factory, read_uow_factory, aead, accounts  # the factors use them
    return MfaServices(recovery_codes=RecoveryCodes(key_ring=key_ring))
