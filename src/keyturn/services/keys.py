"""Signing keys: kept in the database (private parts AES-256-GCM encrypted), cached per process.

Every replica reads the same rows, so a token signed by one verifies on all. The cache
is refreshed every ``cache_seconds`` so keys added by another replica appear without a
restart (DESIGN.md section 4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.security.aead import Aead
from keyturn.security.jose import Signer, Verifier
from keyturn.security.keys import KeyMaterial, generate_key, load_key
from keyturn.services.ports import UnitOfWorkFactory


class KeyManager:
    """Holds the active signer and a verifier over every published key."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        aead: Aead,
        alg: str,
        cache_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow_factory = uow_factory
        self._aead = aead
        self._alg = alg
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded_at = float("-inf")
        self._signer: Signer | None = None
        self._verifier = Verifier([])
        self._jwks: dict[str, Any] = {"keys": []}

    async def start(self) -> None:
        """Makes sure an active key exists, then loads the cache."""
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_published()
            if not any(record.state == "active" for record in records):
                material = await asyncio.to_thread(generate_key, self._alg)
                now = utcnow()
                await uow.signing_keys.add(
                    SigningKeyRecord(
                        kid=material.kid,
                        alg=material.alg,
                        state="active",
                        private_key_encrypted=self._aead.encrypt(
                            material.private_pem, aad=material.kid.encode()
                        ),
                        public_jwk=material.public_jwk,
                        created_at=now,
                        activated_at=now,
                        retired_at=None,
                    )
                )
                await uow.commit()
        await self.reload()

    async def reload(self) -> None:
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_published()
        active = [record for record in records if record.state == "active"]
        if not active:
            raise RuntimeError("no active signing key in the database")
        # Two replicas starting at once may both create one; the newest activation signs.
        newest = max(active, key=lambda record: record.activated_at or record.created_at)
        self._signer = Signer(self._material(newest))
        self._verifier = Verifier(record.public_jwk for record in records)
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

    def _material(self, record: SigningKeyRecord) -> KeyMaterial:
        pem = self._aead.decrypt(record.private_key_encrypted, aad=record.kid.encode())
        return load_key(record.alg, pem)

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            raise RuntimeError("KeyManager.start() was not awaited")
        return self._signer

    @property
    def verifier(self) -> Verifier:
        return self._verifier

    @property
    def jwks(self) -> dict[str, Any]:
        return self._jwks
