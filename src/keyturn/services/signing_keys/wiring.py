"""Builds the signing-key manager from the settings and the adapters ``keyturn.app`` made."""

from __future__ import annotations

from keyturn.config import Settings
from keyturn.security.aead import Aead
from keyturn.services.accounts import RevocationStore
from keyturn.services.change_cache import ChangeFeed
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.manager import KeyManager


def build_signing_keys(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    aead: Aead,
    deny_list: RevocationStore,
    key_changes: ChangeFeed,
) -> KeyManager:
    return KeyManager(
        uow_factory=uow_factory,
        aead=aead,
        alg=settings.signing_alg,
        algorithms=settings.id_token_algs,
        cache_seconds=settings.key_cache_seconds,
        token_ttl=settings.access_token_ttl,
        rotation_days=settings.key_rotation_days,
        publish_ahead_seconds=settings.key_publish_ahead_seconds,
        deny_list=deny_list,
        key_changes=key_changes,
    )
