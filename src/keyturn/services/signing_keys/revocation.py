"""Emergency revocation of one signing key (a compromised private key): what
``KeyManager.revoke()`` writes in one transaction.
See docs/technical/2026-11-26_backend_security-implementation.md (Signing keys).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from keyturn.domain import SigningKeyRecord
from keyturn.errors import Conflict, NotFound
from keyturn.services.ports import UnitOfWork
from keyturn.services.signing_keys.rotation import oldest_first

__all__ = ["KeyRevocation", "UnknownSigningKey", "deny_list_entry", "revoke_key"]

# Revoked kids share the session deny-list; sids are UUIDs, so this prefix never collides.
_KID_ENTRY_PREFIX = "kid:"


def deny_list_entry(kid: str) -> str:
    """The deny-list entry that marks ``kid`` revoked."""
    return _KID_ENTRY_PREFIX + kid


class UnknownSigningKey(NotFound):
    code = "unknown_signing_key"
    title = "No signing key has this kid"


class RevocationRaced(Conflict):
    """A rotation moved the chain while the key was being revoked; retrying is safe."""

    code = "key_revocation_raced"
    title = "The signing keys changed meanwhile; retry the revocation"


@dataclass(frozen=True, slots=True)
class KeyRevocation:
    """What one revocation changed."""

    kid: str
    alg: str
    previous_state: str  # next | active | retired | expired | revoked
    already_revoked: bool  # nothing changed: revoking twice is idempotent
    activated: str | None  # the kid that signs in its place (the key was active)
    created: str | None  # the fresh key made by this call (next, or active without a next)


async def revoke_key(
    uow: UnitOfWork,
    *,
    kid: str,
    algs: tuple[str, ...],
    fresh: SigningKeyRecord,
    now: datetime,
) -> KeyRevocation:
    """The writes of one revocation (not committed).

    Args:
        uow: The open unit of work; the caller commits.
        kid: The key to revoke.
        algs: The algorithms with a chain that must keep signing.
        fresh: A sealed new ``next`` key of ``kid``'s algorithm, added only where needed.
        now: The revocation instant.

    Raises:
        UnknownSigningKey: No key has this kid.
        RevocationRaced: A concurrent rotation activated the ``next`` key first.
    """
    # Serialises against chain creation and other revocations (advisory lock on
    # PostgreSQL, the write lock on SQLite); rotations are told apart by compare-and-set.
    await uow.signing_keys.lock_chains()
    record = await uow.signing_keys.get(kid)
    if record is None:
        raise UnknownSigningKey(f"No signing key has the kid {kid!r}.")
    if record.state == "revoked":
        return KeyRevocation(
            kid=kid,
            alg=record.alg,
            previous_state="revoked",
            already_revoked=True,
            activated=None,
            created=None,
        )
    activated: str | None = None
    created: str | None = None
    chain = [r for r in await uow.signing_keys.list_published() if r.alg == record.alg]
    waiting = oldest_first([r for r in chain if r.state == "next" and r.kid != kid])
    if record.state == "active" and record.alg in algs:
        if waiting:
            # Compare-and-set, as in a rotation: a rotation committing first wins.
            if not await uow.signing_keys.activate(waiting[0].kid, now=now):
                raise RevocationRaced
            activated = waiting[0].kid
            waiting = waiting[1:]
        else:
            active = dataclasses.replace(fresh, state="active", activated_at=now)
            await uow.signing_keys.add(active)
            activated = created = active.kid
    if record.alg in algs and not waiting and created is None:
        # The chain keeps a published `next` key, so the schedule can rotate it later.
        await uow.signing_keys.add(fresh)
        created = fresh.kid
    await uow.signing_keys.revoke(kid, now=now)
    return KeyRevocation(
        kid=kid,
        alg=record.alg,
        previous_state=record.state,
        already_revoked=False,
        activated=activated,
        created=created,
    )
