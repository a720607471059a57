"""Signing keys: kept in the database (private parts AES-256-GCM encrypted), cached per process.

Every replica reads the same rows, so a token signed by one verifies on all. The cache
is refreshed every ``cache_seconds`` so keys added by another replica appear without a
restart (DESIGN.md section 4).

One chain per algorithm: the access-token algorithm (``KEYTURN_SIGNING_ALG``) and every
ID-token algorithm (``KEYTURN_ID_TOKEN_ALGS``; RS256 always, OpenID Connect Core 1.0
section 15.1) each have their own ``next``, ``active`` and ``retired`` keys. ``sign()``
picks the active key of the algorithm asked for; the verifier holds every published key
of every chain, and a key only ever verifies its own algorithm (security/jose.py).

Rotation (states ``next -> active -> retired -> expired``), every chain together:

- A ``next`` key is published in the JWKS for at least ``publish_ahead_seconds`` (longer
  than the JWKS Cache-Control max-age plus ``cache_seconds``, checked in config) before it
  signs, so a verifier caching the JWKS already holds it when the first token arrives.
- ``rotate()`` does, in one transaction, for each chain: ``next`` -> ``active``, that
  chain's old ``active`` -> ``retired`` (``retired_at`` = now), a fresh ``next``. Two
  replicas rotating at once are told apart by a compare-and-set on each ``next`` row
  (``UPDATE ... WHERE kid = :kid AND state = 'next'``): PostgreSQL makes the second UPDATE
  wait for the first's row lock and then match nothing (the chains are taken in a fixed
  order, so the two never deadlock); SQLite serialises the whole transaction (``BEGIN
  IMMEDIATE``), so the second one sees ``next`` keys too young to activate. Either way one
  rotation happens, of every chain or of none.
- A ``retired`` key stays published (and verifying) for ``access_token_ttl +
  cache_seconds + RETIRED_MARGIN_SECONDS`` after ``retired_at``: tokens signed by it, even by
  a replica that has not yet reloaded, keep verifying until they expire. Then it is no
  longer published (filtered by time) and the next rotation marks it ``expired`` and wipes
  its private part.
- The first keys of a chain cannot be created under a compare-and-set (there is no row
  yet): ``start()`` creates them under a lock (``lock_chains``: a PostgreSQL advisory
  lock; SQLite's write lock) and looks again once it holds it, so two replicas starting
  together on an empty table create each chain once. A surplus ``next`` key (from a
  release before that lock) is still absorbed: the oldest ``next`` is activated first and
  no fresh one is made while another is waiting.
- A chain of an algorithm no longer configured never signs again; the next rotation
  retires its keys (``next`` and ``active`` alike), so they leave the JWKS once every
  token they may have signed has expired.

Emergency revocation (``revoke()``, services/key_revocation.py): a compromised key goes to
``revoked`` at once, leaves the JWKS and verifies nothing more. Every replica refuses its
tokens at once: ``verify()`` asks the shared deny-list (Redis with several replicas) about
the token's ``kid`` on every call, and reloads the keys when it is listed; the database
state is the truth the list is rebuilt from (and asked when the list is unreachable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.errors import AccessTokenExpired, InvalidToken, StoreUnavailable
from keyturn.observability.metrics import REVOCATION_STORE_ERRORS
from keyturn.security.aead import Aead
from keyturn.security.jose import JosePolicy, Signer, Verifier, header_kid
from keyturn.security.keys import SUPPORTED_ALGORITHMS, KeyMaterial, generate_key, load_key
from keyturn.services.periodic import every
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.revocation import (
    KeyRevocation,
    UnknownSigningKey,
    deny_list_entry,
    revoke_key,
)
from keyturn.services.signing_keys.rotation import (
    ChainRotation,
    RotationRefused,
    RotationResult,
    activation,
    oldest_first,
    rotate_chains,
)

if TYPE_CHECKING:
    # Only a type: importing accounts at run time would close an import cycle.
    from keyturn.services.accounts import RevocationStore

__all__ = [
    "RETIRED_MARGIN_SECONDS",
    "UNKNOWN_KEY_RELOAD_SECONDS",
    "ChainRotation",
    "KeyInfo",
    "KeyManager",
    "KeyRevocation",
    "RotationRefused",
    "RotationResult",
]

log = structlog.get_logger(__name__)

# Clock skew between replicas and verifiers, on top of the token lifetime.
RETIRED_MARGIN_SECONDS = 60
# A token naming a kid this process does not hold (or a revoked one) reloads the keys at
# most this often, however many such tokens arrive.
UNKNOWN_KEY_RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One signing key as operators see it (no private part)."""

    kid: str
    alg: str
    state: str  # next | active | retired | expired | revoked
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    published: bool  # in the JWKS now
    public_jwk: dict[str, str]


class KeyManager:
    """Holds one key chain per algorithm: the active signers and a verifier over every
    published key; rotates every chain together.

    Args:
        uow_factory: Opens a unit of work (the keys live in the database).
        aead: Seals the private keys at rest.
        alg: The default signing algorithm (access tokens); its chain must sign.
        algorithms: More algorithms to keep a chain for (ID tokens); ``alg`` is always kept.
        cache_seconds: How often the keys are re-read from the database.
        token_ttl: The access-token lifetime (how long a retired key stays published).
        rotation_days: The automatic rotation period; 0 turns the schedule off.
        publish_ahead_seconds: How long a ``next`` key is published before it may sign.
        deny_list: The shared deny-list that tells every replica of a revoked key at once;
            None for a process that only signs or administers (the CLI without Redis).
        clock: Monotonic clock for the cache (injectable for tests).

    Raises:
        ValueError: An algorithm Keyturn cannot sign with.
    """

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        aead: Aead,
        alg: str,
        algorithms: Iterable[str] = (),
        cache_seconds: int,
        token_ttl: int = 600,
        rotation_days: int = 30,
        publish_ahead_seconds: int = 3600,
        deny_list: RevocationStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deny_list = deny_list
        self._uow_factory = uow_factory
        self._aead = aead
        self._alg = alg
        # The default first, then the others in order: one chain each.
        self._algs = tuple(dict.fromkeys((alg, *algorithms)))
        unsupported = [name for name in self._algs if name not in SUPPORTED_ALGORITHMS]
        if unsupported:
            raise ValueError(f"unsupported signing algorithms {unsupported}")
        self._cache_seconds = cache_seconds
        self._rotation_period = timedelta(days=rotation_days)
        self._publish_ahead = timedelta(seconds=publish_ahead_seconds)
        self._retired_window = timedelta(seconds=token_ttl + cache_seconds + RETIRED_MARGIN_SECONDS)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded_at = float("-inf")
        self._signers: dict[str, Signer] = {}
        self._missing: frozenset[str] = frozenset()
        self._verifier = Verifier([])
        self._jwks: dict[str, Any] = {"keys": []}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm with a chain, the default (access-token) one first."""
        return self._algs

    @property
    def retired_window(self) -> timedelta:
        """How long a retired key stays published after ``retired_at``."""
        return self._retired_window

    def _missing_states(self, records: list[SigningKeyRecord]) -> list[tuple[str, str]]:
        present = {(record.alg, record.state) for record in records}
        return [
            (alg, state)
            for alg in self._algs
            for state in ("active", "next")
            if (alg, state) not in present
        ]

    async def start(self) -> None:
        """Makes sure every chain has an active and a next key, then loads the cache.

        Two replicas starting together create each chain once: creation runs under
        ``lock_chains`` and looks again for the keys once it holds the lock.
        """
        async with self._uow_factory() as uow:
            missing = self._missing_states(await uow.signing_keys.list_published())
        if missing:
            # Generated before taking the lock (RSA takes a while); unused ones are dropped.
            made = {pair: await asyncio.to_thread(generate_key, pair[0]) for pair in missing}
            now = utcnow()
            async with self._uow_factory() as uow:
                await uow.signing_keys.lock_chains()
                still = self._missing_states(await uow.signing_keys.list_published())
                for alg, state in still:
                    # A pair missing only now (another process changed the chain) too.
                    material = made.get((alg, state))
                    if material is None:
                        material = await asyncio.to_thread(generate_key, alg)
                    await uow.signing_keys.add(self._record(material, state, now))
                if still:
                    await uow.commit()
                    log.info("signing_keys_created", keys=[f"{a}:{s}" for a, s in still])
        await self.reload()

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

    async def verify(self, token: str, policy: JosePolicy) -> dict[str, Any]:
        """Verifies ``token`` against the published keys (one call, security/jose.py) and
        refuses one signed by a revoked key, even before this process reloaded.

        Raises:
            InvalidToken: Any failure, a revoked signing key included.
        """
        await self.refresh_if_stale()
        try:
            claims = self._verifier.verify(token, policy)
        except AccessTokenExpired:
            # Its signature held, so its key is loaded: an expired token (a common sight)
            # is no reason to re-read the keys.
            raise
        except InvalidToken:
            # Maybe signed with a key another replica created after our last load.
            if not await self.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS):
                raise
            claims = self._verifier.verify(token, policy)
        kid = header_kid(token)
        if kid is None or await self._is_revoked(kid):
            # Another replica revoked it: stop signing and verifying with it here too.
            await self.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS)
            raise InvalidToken("The token was signed by a revoked key.")
        return claims

    async def ensure_signers_current(self) -> None:
        """Before signing: when another replica revoked a key this process still signs
        with, load the keys now, so the new active key signs the very next token.

        A deny-list outage skips the check (signing is not where revocation fails closed:
        every verifier refuses the key's tokens, and the schedule reloads within
        ``cache_seconds``).
        """
        if self._deny_list is None:
            return
        try:
            for signer in list(self._signers.values()):
                if await self._deny_list.is_revoked(deny_list_entry(signer.kid)):
                    async with self._lock:
                        await self.reload()
                    return
        except StoreUnavailable:
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()

    async def current_jwks(self) -> dict[str, Any]:
        """The JWKS to publish: a key another replica revoked is left out at once."""
        await self.refresh_if_stale()
        jwks = self._jwks
        revoked = [key["kid"] for key in jwks["keys"] if await self._is_revoked(key["kid"])]
        if not revoked:
            return jwks
        await self.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS)
        return {"keys": [key for key in self._jwks["keys"] if key["kid"] not in revoked]}

    async def _is_revoked(self, kid: str) -> bool:
        if self._deny_list is None:
            return False  # one process: revoke() has already reloaded this one
        try:
            return await self._deny_list.is_revoked(deny_list_entry(kid))
        except StoreUnavailable:
            # Fail closed: the database is the truth when the shared list cannot answer.
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            async with self._uow_factory() as uow:
                record = await uow.signing_keys.get(kid)
            return record is None or record.state == "revoked"

    async def revoke(self, kid: str) -> KeyRevocation:
        """Emergency revocation of ``kid`` (services/key_revocation.py); idempotent.

        Raises:
            UnknownSigningKey: No key has this kid.
            RevocationRaced: A rotation ran at the same moment; retry.
        """
        async with self._uow_factory() as uow:
            known = await uow.signing_keys.get(kid)
        if known is None:
            # Before generating anything (an RSA key takes a while).
            raise UnknownSigningKey(f"No signing key has the kid {kid!r}.")
        alg = known.alg if known.alg in self._algs else self._alg
        # Generated outside the transaction (RSA takes a while); discarded when unused.
        material = await asyncio.to_thread(generate_key, alg)
        now = utcnow()
        try:
            async with self._uow_factory() as uow:
                result = await revoke_key(
                    uow,
                    kid=kid,
                    algs=self._algs,
                    fresh=self._record(material, "next", now),
                    now=now,
                )
                await uow.commit()
            await self._publish_revocation(kid)
        finally:
            async with self._lock:
                await self.reload()
        if not result.already_revoked:
            log.warning(
                "signing_key_revoked",
                kid=kid,
                alg=result.alg,
                previous_state=result.previous_state,
                activated=result.activated,
            )
        return result

    async def _publish_revocation(self, kid: str) -> None:
        if self._deny_list is None:
            return
        try:
            # Listed until every replica has reloaded without the key (the database state
            # keeps it out after that); restore_deny_list re-lists it after a Redis reset.
            await self._deny_list.revoke(deny_list_entry(kid), self.deny_list_ttl)
        except StoreUnavailable:
            # Replicas reading the database (list unreachable) or reloading see it anyway.
            REVOCATION_STORE_ERRORS.labels("revoke").inc()
            log.error("deny_list_write_failed", kid=kid)

    @property
    def deny_list_ttl(self) -> int:
        """Seconds a revoked kid stays on the shared deny-list."""
        return int(self._retired_window.total_seconds())

    async def revoked_kids(self) -> list[tuple[str, int]]:
        """Kids revoked recently enough to be on the deny-list, with the seconds left."""
        now = utcnow()
        async with self._uow_factory() as uow:
            revoked = await uow.signing_keys.revoked_since(now - self._retired_window)
        return [
            (
                deny_list_entry(kid),
                max(self.deny_list_ttl - int((now - revoked_at).total_seconds()), 1),
            )
            for kid, revoked_at in revoked
        ]

    async def rotate(self, *, force: bool = False) -> RotationResult:
        """Rotates every chain together: per algorithm, the ``next`` key becomes active,
        the active one retires and a fresh ``next`` is made.

        A chain without a ``next`` key (a database from before rotation existed, or a
        chain an older release disturbed) only gets a ``next`` key; it may be activated
        once it has been published long enough. All chains change in one transaction, or
        none does.

        Args:
            force: Activate ``next`` keys published for less than ``publish_ahead_seconds``
                (a compromised key). Verifiers holding a cached JWKS without them will
                reject the new tokens until their cache expires.

        Returns:
            What changed, per chain.

        Raises:
            RotationRefused: A ``next`` key is too young (without ``force``), or another
                process rotated at the same moment.
        """
        # Generated outside the transaction (RSA takes a while); discarded when unused.
        materials = [await asyncio.to_thread(generate_key, alg) for alg in self._algs]
        now = utcnow()
        fresh = {material.alg: self._record(material, "next", now) for material in materials}
        try:
            async with self._uow_factory() as uow:
                result = await rotate_chains(
                    uow,
                    algs=self._algs,
                    fresh=fresh,
                    now=now,
                    publish_ahead=self._publish_ahead,
                    retired_window=self._retired_window,
                    force=force,
                )
                if result is None:
                    raise RotationRefused("Another process rotated the signing keys just now.")
                await uow.commit()
        finally:
            # Rotated here, or refused because another process just did: load the keys now.
            async with self._lock:
                await self.reload()
        for chain in result.chains:
            log.info(
                "signing_keys_rotated",
                alg=chain.alg,
                activated=chain.activated,
                retired=list(chain.retired),
                next=chain.next,
                forced=force,
            )
        return result

    async def rotate_if_due(self) -> RotationResult | None:
        """Rotates every chain when one is due: its active key is older than the rotation
        period, or it lacks an active or a ``next`` key; and only once every ``next`` key
        has been published long enough.

        Safe on every replica at once: one rotation happens, the others return None.
        """
        now = utcnow()
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_published(retired_since=now)
        due = False
        stale = False
        for alg in self._algs:
            active = [r for r in records if r.alg == alg and r.state == "active"]
            waiting = oldest_first([r for r in records if r.alg == alg and r.state == "next"])
            signer = self._signers.get(alg)
            if active and (signer is None or max(active, key=activation).kid != signer.kid):
                stale = True
            if waiting and now - waiting[0].created_at < self._publish_ahead:
                return None  # a rotation now would be refused; the chains move together
            aged = bool(active) and now - max(map(activation, active)) >= self._rotation_period
            # Due by age, or an incomplete chain (no active or no next key).
            due = due or aged or not active or not waiting
        if stale:
            # Another replica rotated since this one last loaded: catch up now.
            async with self._lock:
                await self.reload()
        if not due:
            return None
        try:
            return await self.rotate()
        except RotationRefused:
            return None  # another replica got there first

    async def run_schedule(self, *, stop: asyncio.Event, check_seconds: float) -> None:
        """Until ``stop``: rotate when due every ``check_seconds`` (when the rotation
        period is not 0) and reload the cache every ``cache_seconds``, so a process that
        only signs (and never verifies) also moves to the new active key in time."""
        # start() has just loaded the keys (and made any missing one): wait first.
        next_check = self._clock() + check_seconds

        async def round_() -> None:
            nonlocal next_check
            if self._rotation_period and self._clock() >= next_check:
                next_check = self._clock() + check_seconds
                await self.rotate_if_due()
            await self.refresh_if_stale()

        wait = min(check_seconds, self._cache_seconds)
        await every(wait, stop, round_, "signing_key_schedule_failed")

    async def list_keys(self) -> list[KeyInfo]:
        """Every key, newest first; a retired key past its publication window shows as
        ``expired`` even before a rotation marks it so."""
        now = utcnow()
        cutoff = now - self._retired_window
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_all()
        keys = []
        for record in records:
            state = record.state
            if state == "retired" and record.retired_at is not None and record.retired_at < cutoff:
                state = "expired"
            keys.append(
                KeyInfo(
                    kid=record.kid,
                    alg=record.alg,
                    state=state,
                    created_at=record.created_at,
                    activated_at=record.activated_at,
                    retired_at=record.retired_at,
                    published=state in ("next", "active", "retired"),
                    public_jwk=dict(record.public_jwk),
                )
            )
        return keys

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
