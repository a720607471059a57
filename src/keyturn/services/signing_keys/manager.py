"""Signing keys: one chain per algorithm (``next -> active -> retired``), kept in the database.

``KeyManager`` creates, rotates and revokes the keys; the per-process cache it reloads is
``key_cache.py`` and the shared kid deny-list ``deny_list.py``.
See docs/technical/2026-11-26_backend_security-implementation.md (Signing keys).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.errors import AccessTokenExpired, InvalidToken
from keyturn.security.aead import Aead
from keyturn.security.jose import JosePolicy, header_kid
from keyturn.security.keys import SUPPORTED_ALGORITHMS, generate_key
from keyturn.services.change_cache import ChangeFeed
from keyturn.services.periodic import every
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.deny_list import KidDenyList
from keyturn.services.signing_keys.key_cache import KeyCache
from keyturn.services.signing_keys.key_info import KeyInfo, key_info
from keyturn.services.signing_keys.revocation import (
    KeyRevocation,
    UnknownSigningKey,
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


class KeyManager(KeyCache):
    """Holds one key chain per algorithm (the cache: :class:`KeyCache`); rotates every
    chain together, revokes one key at once.

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
        key_changes: The feed of revoked kids, behind this process's memory of the
            deny-list (``deny_list.py``); None: every check asks the deny-list.
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
        key_changes: ChangeFeed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The default first, then the others in order: one chain each.
        algs = tuple(dict.fromkeys((alg, *algorithms)))
        unsupported = [name for name in algs if name not in SUPPORTED_ALGORITHMS]
        if unsupported:
            raise ValueError(f"unsupported signing algorithms {unsupported}")
        retired_window = timedelta(seconds=token_ttl + cache_seconds + RETIRED_MARGIN_SECONDS)
        super().__init__(
            uow_factory=uow_factory,
            aead=aead,
            algs=algs,
            cache_seconds=cache_seconds,
            retired_window=retired_window,
            clock=clock,
        )
        self._rotation_period = timedelta(days=rotation_days)
        self._publish_ahead = timedelta(seconds=publish_ahead_seconds)
        self._denied = KidDenyList(
            deny_list,
            uow_factory=uow_factory,
            retired_window=retired_window,
            changes=key_changes,
            clock=clock,
        )

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

    async def verify(self, token: str, policy: JosePolicy) -> dict[str, Any]:
        """Verifies ``token`` against the published keys (one call, security/jose.py) and
        refuses one signed by a revoked key, even before this process reloaded.

        Raises:
            InvalidToken: Any failure, a revoked signing key included.
        """
        claims, _ = await self.verify_session(token, policy, lambda _claims: None)
        return claims

    async def verify_session(
        self, token: str, policy: JosePolicy, entry_of: Callable[[dict[str, Any]], str | None]
    ) -> tuple[dict[str, Any], bool | None]:
        """``verify``, asking the deny-list about the key and the token's session entry
        (``entry_of(claims)``) in one read (issue 18).

        Returns:
            The claims, and whether the session is listed; None when that was not asked
            (no session entry, or the one read failed): ask the session's deny-list then.
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
        kid, entry = header_kid(token), entry_of(claims)
        listed = await self._denied.listed_with(kid, entry) if kid and entry else None
        if kid is None or (listed[0] if listed else await self._denied.is_revoked(kid)):
            # Another replica revoked it: stop signing and verifying with it here too.
            await self.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS)
            raise InvalidToken("The token was signed by a revoked key.")
        return claims, listed[1] if listed else None

    async def ensure_signers_current(self) -> None:
        """Before signing: when another replica revoked a key this process still signs
        with, load the keys now, so the new active key signs the very next token.

        A deny-list outage skips the check (signing is not where revocation fails closed:
        every verifier refuses the key's tokens, and the schedule reloads within
        ``cache_seconds``).
        """
        if await self._denied.lists_any([signer.kid for signer in self._signers.values()]):
            async with self._lock:
                await self.reload()

    async def current_jwks(self) -> dict[str, Any]:
        """The JWKS to publish: a key another replica revoked is left out at once."""
        await self.refresh_if_stale()
        jwks = self._jwks
        revoked = await self._denied.revoked_of([key["kid"] for key in jwks["keys"]])
        if not revoked:
            return jwks
        await self.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS)
        return {"keys": [key for key in self._jwks["keys"] if key["kid"] not in revoked]}

    async def revoked_kids(self) -> list[tuple[str, int]]:
        """Kids revoked recently enough to be on the deny-list, with the seconds left."""
        return await self._denied.entries()

    async def revoke(self, kid: str) -> KeyRevocation:
        """Emergency revocation of ``kid`` (signing_keys/revocation.py); idempotent.

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
            await self._denied.publish(kid)
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
        cutoff = utcnow() - self._retired_window
        async with self._uow_factory() as uow:
            records = await uow.signing_keys.list_all()
        return [key_info(record, retired_before=cutoff) for record in records]
