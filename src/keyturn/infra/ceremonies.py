"""WebAuthn ceremony state: a challenge's context, kept a few minutes, taken exactly once.

``services.mfa.CeremonyStore``: a ceremony begins on one replica (the options) and may end
on another (the response), and a challenge must never be accepted twice (W3C WebAuthn
Level 3 section 13.4.3: the Relying Party checks the challenge it issued, once).

Two implementations share one contract suite (``tests/unit/infra/test_ceremony_contract.py``):

* ``MemoryCeremonyStore`` - one process only (the embedded default, one worker).
* ``RedisCeremonyStore`` - shared by every worker and replica: ``SET EX`` and ``GETDEL``
  (one atomic command, so of two racing takers exactly one gets the value).

A Redis failure raises ``StoreUnavailable`` (503): a ceremony cannot be checked without
its challenge, and "could not check" never passes.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from keyturn.infra.redis_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisAdapter,
    store_errors,
)

__all__ = ["MemoryCeremonyStore", "RedisCeremonyStore", "build_ceremony_store"]

# Upper bound on expired entries dropped per call (same reasoning as the deny-list): no
# single request pays for a backlog, yet each call removes more than it adds.
_PURGE_BATCH = 32
# A ceremony lives minutes; a bound on held entries keeps a flood of option requests from
# growing one process without limit (the oldest expiry goes first).
_MAX_ENTRIES = 100_000


def _check_ttl(ttl_seconds: int) -> None:
    # Redis refuses EX 0; refuse a non-positive TTL the same way in every implementation.
    if ttl_seconds < 1:
        raise ValueError("ttl_seconds must be at least 1")


class MemoryCeremonyStore:
    """In-process ceremony state for a single worker.

    Calls never await, so under asyncio each one (``take`` included) is atomic.

    Args:
        clock: Monotonic seconds; injectable so tests move time without sleeping.
        max_entries: Entries held at most; beyond it the soonest-expiring one is dropped.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = _MAX_ENTRIES
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._values: dict[str, tuple[float, bytes]] = {}
        # Min-heap of (expiry, key); a replaced key leaves a stale entry purge skips.
        self._heap: list[tuple[float, str]] = []

    async def put(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        """See ``CeremonyStore.put``."""
        _check_ttl(ttl_seconds)
        now = self._clock()
        self._purge(now)
        while len(self._values) >= self._max_entries and self._heap:
            self._drop_oldest()
        expires_at = now + ttl_seconds
        self._values[key] = (expires_at, value)
        heapq.heappush(self._heap, (expires_at, key))

    async def take(self, key: str) -> bytes | None:
        """See ``CeremonyStore.take``."""
        now = self._clock()
        self._purge(now)
        entry = self._values.pop(key, None)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    async def ping(self) -> None:
        """Always answers: the store lives in this process."""

    async def close(self) -> None:
        """Drop every entry."""
        self._values.clear()
        self._heap.clear()

    def __len__(self) -> int:
        """Number of entries held, expired-but-not-yet-purged ones included."""
        return len(self._values)

    def _drop_oldest(self) -> None:
        expires_at, key = heapq.heappop(self._heap)
        entry = self._values.get(key)
        if entry is not None and entry[0] == expires_at:
            del self._values[key]

    def _purge(self, now: float) -> None:
        for _ in range(_PURGE_BATCH):
            if not self._heap or self._heap[0][0] > now:
                return
            self._drop_oldest()


class RedisCeremonyStore(RedisAdapter):
    """Ceremony state in Redis, one key per challenge with a native TTL.

    Built like every ``RedisAdapter`` (client or ``from_url``, key prefix).
    """

    component = "ceremonies"

    def key(self, key: str) -> str:
        """The Redis key holding ``key``'s value."""
        return self._namespaced(f"ceremony:{key}")

    async def put(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        """See ``CeremonyStore.put``."""
        _check_ttl(ttl_seconds)
        with store_errors("ceremony put", self.component):
            await self._client.set(self.key(key), value, ex=ttl_seconds)

    async def take(self, key: str) -> bytes | None:
        """See ``CeremonyStore.take``: ``GETDEL`` (Redis 6.2), one atomic command."""
        with store_errors("ceremony take", self.component):
            value = await self._client.getdel(self.key(key))
        # The client is built with decode_responses off: bytes, never str.
        return value.encode() if isinstance(value, str) else value


def build_ceremony_store(
    redis_url: str | None,
    *,
    prefix: str,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> MemoryCeremonyStore | RedisCeremonyStore:
    """Pick the ceremony store for this deployment.

    Args:
        redis_url: ``KEYTURN_REDIS_URL``; ``None`` (or empty) means one process and the
            in-memory store.
        prefix: Redis key namespace (ignored by the memory store).
        socket_timeout: Seconds to wait for one Redis command's answer.
        connect_timeout: Seconds to wait for a Redis connection.

    Returns:
        A ``RedisCeremonyStore`` when a URL is given, else a ``MemoryCeremonyStore``.
    """
    if redis_url:
        return RedisCeremonyStore.from_url(
            redis_url,
            prefix=prefix,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
    return MemoryCeremonyStore()
