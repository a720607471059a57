"""Session deny-list: a revoked ``sid`` is refused by every replica at once.

DESIGN.md section 4: the database is the source of truth for revocation; on logout or
revocation the ``sid`` is also put here for the access-token lifetime, so a still-valid
access token carrying that ``sid`` is rejected everywhere without a database read.

Two implementations share one contract suite
(``tests/unit/infra/test_revocation_contract.py``):

* ``MemoryRevocationStore`` - one process only (the embedded default, one worker).
* ``RedisRevocationStore`` - shared by every worker and replica.

A Redis failure raises ``StoreUnavailable``; the caller then asks the database, it
never treats "could not check" as "not revoked".
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence

from keyturn.errors import StoreUnavailable
from keyturn.infra.redis_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisAdapter,
    store_errors,
)

__all__ = ["MemoryRevocationStore", "RedisRevocationStore", "build_revocation_store"]

# Upper bound on expired entries dropped per call, so no single request pays for a
# backlog; each call removes more than it can add (one), so the backlog still drains.
_PURGE_BATCH = 32


def _check_ttl(ttl_seconds: int) -> None:
    # Redis refuses EX 0 and a non-positive TTL would be a no-op revocation: refuse both
    # the same way in every implementation.
    if ttl_seconds < 1:
        raise ValueError("ttl_seconds must be at least 1")


class MemoryRevocationStore:
    """In-process deny-list for a single worker.

    Entries expire lazily: lookups compare against the clock, and every call drops at
    most a small batch of expired entries, oldest expiry first.

    Args:
        clock: Monotonic seconds; injectable so tests move time without sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        # Min-heap of (expiry, sid) so purging finds expired entries without a scan.
        # A re-revoked sid leaves a stale heap entry; purge skips it by comparing times.
        self._heap: list[tuple[float, str]] = []

    async def revoke(self, sid: str, ttl_seconds: int) -> None:
        """See ``RevocationStore.revoke``."""
        _check_ttl(ttl_seconds)
        now = self._clock()
        self._purge(now)
        expires_at = now + ttl_seconds
        self._expiry[sid] = expires_at
        heapq.heappush(self._heap, (expires_at, sid))

    async def is_revoked(self, sid: str) -> bool:
        """See ``RevocationStore.is_revoked``."""
        now = self._clock()
        self._purge(now)
        expires_at = self._expiry.get(sid)
        return expires_at is not None and expires_at > now

    async def revoked_among(self, sids: Sequence[str]) -> frozenset[str]:
        """See ``RevocationStore.revoked_among``."""
        now = self._clock()
        self._purge(now)
        return frozenset(sid for sid in sids if self._expiry.get(sid, now) > now)

    async def seal(self) -> None:
        """Nothing to do: this list lives and dies with the process that restores it."""

    async def ping(self) -> None:
        """Always answers: the store lives in this process."""

    async def close(self) -> None:
        """Drop every entry."""
        self._expiry.clear()
        self._heap.clear()

    def __len__(self) -> int:
        """Number of entries held, expired-but-not-yet-purged ones included."""
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap = self._heap
        for _ in range(_PURGE_BATCH):
            if not heap or heap[0][0] > now:
                return
            expires_at, sid = heapq.heappop(heap)
            if self._expiry.get(sid) == expires_at:
                del self._expiry[sid]


class RedisRevocationStore(RedisAdapter):
    """Deny-list in Redis, one key per revoked ``sid`` with a native TTL.

    Built like every ``RedisAdapter`` (client or ``from_url``, key prefix).
    """

    component = "revocation"

    def key(self, sid: str) -> str:
        """Redis key that marks ``sid`` as revoked."""
        return self._namespaced(f"revoked:sid:{sid}")

    async def revoke(self, sid: str, ttl_seconds: int) -> None:
        """See ``RevocationStore.revoke``."""
        _check_ttl(ttl_seconds)
        with store_errors("revoke", self.component):
            await self._client.set(self.key(sid), b"1", ex=ttl_seconds)

    @property
    def _seal_key(self) -> str:
        return self._namespaced("revoked:sealed")

    async def is_revoked(self, sid: str) -> bool:
        """See ``RevocationStore.is_revoked``.

        Raises:
            StoreUnavailable: Also when the seal is missing: Redis restarted empty or was
                flushed, so "not listed" proves nothing until ``seal`` runs again.
        """
        with store_errors("is_revoked", self.component):
            listed, sealed = await self._batch.execute("MGET", self.key(sid), self._seal_key)
        if sealed is None:
            raise StoreUnavailable("the deny-list lost its contents (Redis reset)")
        return listed is not None

    async def revoked_among(self, sids: Sequence[str]) -> frozenset[str]:
        """See ``RevocationStore.revoked_among``: one MGET with the seal, like ``is_revoked``.

        Raises:
            StoreUnavailable: Also when the seal is missing (see ``is_revoked``).
        """
        if not sids:
            return frozenset()
        with store_errors("revoked_among", self.component):
            *listed, sealed = await self._batch.execute(
                "MGET", *(self.key(sid) for sid in sids), self._seal_key
            )
        if sealed is None:
            raise StoreUnavailable("the deny-list lost its contents (Redis reset)")
        return frozenset(sid for sid, value in zip(sids, listed, strict=True) if value is not None)

    async def seal(self) -> None:
        """See ``RevocationStore.seal``."""
        with store_errors("seal", self.component):
            await self._client.set(self._seal_key, b"1")


def build_revocation_store(
    redis_url: str | None,
    *,
    prefix: str,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> MemoryRevocationStore | RedisRevocationStore:
    """Pick the deny-list for this deployment.

    Args:
        redis_url: ``KEYTURN_REDIS_URL``; ``None`` (or empty) means one process and
            the in-memory store.
        prefix: Redis key namespace (ignored by the memory store).
        socket_timeout: Seconds to wait for one Redis command's answer.
        connect_timeout: Seconds to wait for a Redis connection.

    Returns:
        A ``RedisRevocationStore`` when a URL is given, else a ``MemoryRevocationStore``.
    """
    if redis_url:
        return RedisRevocationStore.from_url(
            redis_url,
            prefix=prefix,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
    return MemoryRevocationStore()
