"""This process's copy of the signing keys: the active signers and a verifier over every
published key, re-read from the database every ``cache_seconds`` so keys another replica
made appear without a restart (DESIGN.md section 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.observability.scrape import record_active_signing_key
from keyturn.security.aead import Aead
from keyturn.security.jose import CheckedSignatures, Signer, Verifier
from keyturn.security.keys import KeyMaterial, load_key
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.rotation import activation

log = structlog.get_logger(__name__)


class KeyCache:
    """The keys of every chain as last read; sealing and unsealing of their private parts.

    Args:
        uow_factory: Opens a unit of work (the keys live in the database).
        aead: Seals the private keys at rest.
        algs: The algorithms with a chain, the default (access-token) one first.
        cache_seconds: How often the keys are re-read from the database.
        retired_window: How long a retired key stays published after ``retired_at``.
        clock: Monotonic clock for the cache (injectable for tests).
    """

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        aead: Aead,
        algs: tuple[str, ...],
        cache_seconds: int,
        retired_window: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow_factory = uow_factory
        self._aead = aead
        self._alg = algs[0]
        self._algs = algs
        self._cache_seconds = cache_seconds
        self._retired_window = retired_window
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded_at = float("-inf")
        self._signers: dict[str, Signer] = {}
        self._missing: frozenset[str] = frozenset()
        # Kept across reloads: a token checked under a key stays checked while that key
        # is loaded (a key no longer loaded refuses its tokens before this is asked).
        self._checked = CheckedSignatures()
        self._verifier = Verifier([], checked=self._checked)
        self._jwks: dict[str, Any] = {"keys": []}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm with a chain, the default (access-token) one first."""
        return self._algs

    @property
    def retired_window(self) -> timedelta:
        """How long a retired key stays published after ``retired_at``."""
        return self._retired_window

    async def reload(self) -> None:
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_published(
                retired_since=utcnow() - self._retired_window
            )
        signers: dict[str, Signer] = {}
        for alg in self._algs:
            active = [r for r in records if r.alg == alg and r.state == "active"]
            if not active:
                continue
            # Two replicas starting at once (before the chain lock) may both have made
            # one; the newest activation signs.
            newest = max(active, key=activation)
            record_active_signing_key(alg, activation(newest))
            current = self._signers.get(alg)
            if current is not None and current.kid == newest.kid:
                signers[alg] = current  # parsing a private key costs; same key, same signer
            else:
                signers[alg] = Signer(self._material(newest))
        if self._alg not in signers:
            raise RuntimeError(f"no active {self._alg} signing key in the database")
        missing = frozenset(self._algs) - signers.keys()
        if missing != self._missing:
            # A chain lost its active key (e.g. retired by an older release during an
            # upgrade); the next rotation activates its next key.
            log.warning("signing_key_chain_without_active_key", algs=sorted(missing))
            self._missing = missing
        self._signers = signers
        self._verifier = Verifier((record.public_jwk for record in records), checked=self._checked)
        self._jwks = {"keys": [dict(record.public_jwk) for record in records]}
        self._loaded_at = self._clock()

    async def refresh_if_stale(self) -> None:
        if self._clock() - self._loaded_at < self._cache_seconds:
            return
        async with self._lock:
            # Another task may have reloaded while this one waited for the lock.
            if self._clock() - self._loaded_at >= self._cache_seconds:
                await self.reload()

    async def reload_if_older_than(self, seconds: float) -> bool:
        """Reloads when the cache is older than ``seconds``; True when it did.

        Lets a verifier meeting an unknown ``kid`` (a key another replica just created)
        look again, at most once per ``seconds`` however many bad tokens arrive.
        """
        async with self._lock:
            if self._clock() - self._loaded_at < seconds:
                return False
            await self.reload()
            return True

    async def reseal(self) -> tuple[int, int]:
        """Re-encrypts every private key under the first ring key (``keyturn secret
        rotate``); idempotent. Returns (re-encrypted, already current).

        Raises:
            DecryptionError: A key is sealed under a ring key that is no longer configured.
        """
        resealed = current = 0
        async with self._uow_factory() as uow:
            for record in await uow.signing_keys.list_all():
                blob = record.private_key_encrypted
                if not blob:  # expired: wiped
                    continue
                if not self._aead.needs_reencrypt(blob):
                    current += 1
                    continue
                aad = record.kid.encode()
                sealed = self._aead.encrypt(self._aead.decrypt(blob, aad=aad), aad=aad)
                # Compare-and-set: a key wiped meanwhile by a rotation stays wiped.
                if await uow.signing_keys.replace_private_key(record.kid, old=blob, new=sealed):
                    resealed += 1
            await uow.commit()
        return resealed, current

    def _record(self, material: KeyMaterial, state: str, now: datetime) -> SigningKeyRecord:
        return SigningKeyRecord(
            kid=material.kid,
            alg=material.alg,
            state=state,
            private_key_encrypted=self._aead.encrypt(
                material.private_pem, aad=material.kid.encode()
            ),
            public_jwk=material.public_jwk,
            created_at=now,
            activated_at=now if state == "active" else None,
            retired_at=None,
        )

    def _material(self, record: SigningKeyRecord) -> KeyMaterial:
        pem = self._aead.decrypt(record.private_key_encrypted, aad=record.kid.encode())
        return load_key(record.alg, pem)

    @property
    def signer(self) -> Signer:
        """The active signer of the default (access-token) algorithm."""
        return self.signer_for(None)

    def signer_for(self, alg: str | None) -> Signer:
        """The active signer of ``alg`` (None: the default algorithm).

        Raises:
            RuntimeError: Not started, or no active key of ``alg`` (not a kept algorithm).
        """
        signer = self._signers.get(alg or self._alg)
        if signer is None:
            if not self._signers:
                raise RuntimeError("KeyManager.start() was not awaited")
            raise RuntimeError(f"no active {alg} signing key (kept: {', '.join(self._algs)})")
        return signer

    def sign(self, claims: Mapping[str, Any], *, typ: str, alg: str | None = None) -> str:
        """Signs ``claims`` with the active key of ``alg`` (None: the default algorithm);
        the header is ``{alg, kid, typ}``.

        Raises:
            RuntimeError: No active key of ``alg``.
        """
        return self.signer_for(alg).sign(claims, typ=typ)

    @property
    def verifier(self) -> Verifier:
        return self._verifier

    @property
    def jwks(self) -> dict[str, Any]:
        return self._jwks
