"""A per-process cache that every replica empties on a change: the rules it keeps.

Used where a hot path reads something that changes rarely (issue 18): OAuth clients
(``services/oauth2/client_cache.py``) and the signed-in user's profile
(``services/accounts/user_cache.py``). Each cache listens on its own channel of a
``ChangeFeed`` (Redis pub/sub, or in-process). The rules, and why each holds:

1. Only while the change feed is live. Entries are served only while the feed confirms
   it hears every change. On a disconnect the feed calls ``lost``: everything is dropped
   and the cache is bypassed (database reads, as without a cache) until SUBSCRIBE is
   confirmed again (``live``). Pub/sub keeps no history, so nothing held across a gap can
   be trusted.
2. Every write publishes after its commit and before its answer. A replica that reads
   after the message reads the committed row. A read that started before the message may
   bring the old row back after it; so a fill is stored only if no change (of any key) and
   no loss was heard while it read (``_epoch``). Why the very next request on another
   replica sees the change: Redis queues the message on every subscriber's connection
   before it answers PUBLISH, the writer answers its caller only after that, and the feed
   applies a message in the same step in which it reads it (``infra/invalidation.py``); a
   request that reaches the replica afterwards makes its Redis call (throttle or
   deny-list) first, by which time the message is in that replica's socket. This is an
   ordering in practice, not a barrier; rule 3 bounds what it cannot cover.
3. Entries expire after ``max_age`` seconds whatever the feed says. It bounds the one case
   pub/sub cannot see: a message that never left its publisher (the publisher lost Redis
   while the subscribers kept it), or a subscription that went silently dead before the
   heartbeat noticed (``infra/invalidation.py``, 3 s). A publisher that could not publish
   waits ``max_age`` before it answers (``publish_change``), so when the writer's caller
   reads "done", no replica serves the old entry.
4. At most ``max_entries`` entries (least recently used first out): a flood of distinct
   keys cannot grow the process.
5. ``EVERY_KEY`` as a change empties the whole cache (a change that touches many keys at
   once, such as a deleted role for the user cache).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

import structlog

from keyturn.errors import StoreUnavailable

__all__ = ["EVERY_KEY", "ChangeFedCache", "ChangeFeed", "ChangeListener"]

log = structlog.get_logger(__name__)

EVERY_KEY = "*"


class ChangeListener(Protocol):
    """What hears changes on a feed: a per-process cache (``ChangeFedCache``).

    The feed calls these from its own task, never concurrently; each call is synchronous,
    so no request runs between a message being read and the cache reacting to it.
    """

    def changed(self, key: str) -> None:
        """A replica changed what ``key`` names (or deleted it): forget it."""

    def lost(self) -> None:
        """The feed stopped hearing changes (disconnect, error): forget all, trust nothing."""

    def live(self) -> None:
        """The feed hears every change from now on (SUBSCRIBE confirmed)."""


class ChangeFeed(Protocol):
    """Changes announced to every process on one channel (``infra/invalidation.py``).

    The memory feed reaches this process only (one worker); the Redis feed uses pub/sub.
    """

    def attach(self, listener: ChangeListener) -> None:
        """Delivers every change heard from now on to ``listener``."""

    async def publish(self, key: str) -> None:
        """Announces that ``key`` changed; returns once the feed accepted it.

        Raises:
            StoreUnavailable: The announcement could not be sent.
        """


V = TypeVar("V")


class ChangeFedCache(Generic[V]):
    """Entries by key, trusted under the module's rules; a ``ChangeListener``.

    Args:
        changes: The change feed; the cache attaches itself to it.
        max_age: Seconds an entry is trusted at most (rule 3).
        max_entries: Bound on the number of entries (rule 4).
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        *,
        changes: ChangeFeed,
        max_age: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._changes = changes
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Fail closed until the feed says it is live (rule 1).
        self._live = False
        # Bumped by every change or loss heard: a fill that saw it move is not stored (rule 2).
        self._epoch = 0
        changes.attach(self)

    # -- ChangeListener (called by the feed, synchronously) --------------------------------

    def changed(self, key: str) -> None:
        self._epoch += 1
        if key == EVERY_KEY:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def lost(self) -> None:
        self._live = False
        self._epoch += 1
        self._entries.clear()

    def live(self) -> None:
        # Whatever was held before the (re)subscription may have missed a message.
        self._epoch += 1
        self._entries.clear()
        self._live = True

    # -- reads -----------------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, key: str) -> V | None:
        """The entry for ``key`` if it may be trusted now (no database)."""
        if not self._live:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self._clock() - stored_at >= self._max_age:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def find_or_load(self, key: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The entry for ``key``, else what ``load`` reads (stored when rule 2 allows).

        ``None`` from ``load`` (nothing there) is never stored: what is created on one
        replica is found on every other at once.
        """
        value = self.cached(key)
        if value is not None:
            return value
        epoch = self._epoch
        value = await load()
        if value is not None:
            self.fill({key: value}, since=epoch)
        return value

    @property
    def epoch(self) -> int:
        """Moves with every change or loss heard: take it before a read meant for ``fill``."""
        return self._epoch

    def fill(self, entries: Mapping[str, V], *, since: int) -> None:
        """Stores ``entries``, read after ``epoch`` was ``since``, unless a change or a loss
        was heard meanwhile (rule 2: the read may have brought an old answer back)."""
        if self._live and self._epoch == since:
            for key, value in entries.items():
                self._store(key, value)

    def _store(self, key: str, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    # -- writes ----------------------------------------------------------------------------

    async def publish_change(self, key: str) -> None:
        """Announces a committed change of ``key`` to every process (rule 2).

        Called after the commit and before the answer. This process forgets at once; when
        the feed cannot publish, the answer waits until every other process's entry has
        expired (rule 3), so the change is in force everywhere once the caller hears of it.
        """
        await self.publish_changes((key,))

    async def publish_changes(self, keys: Iterable[str]) -> None:
        """``publish_change`` for each of ``keys``, waiting out ``max_age`` once at most."""
        unpublished: StoreUnavailable | None = None
        for key in keys:
            self.changed(key)
            try:
                await self._changes.publish(key)
            except StoreUnavailable as exc:
                unpublished = exc
        if unpublished is not None:
            log.warning(
                "cache_change_unpublished", error=str(unpublished), wait_seconds=self._max_age
            )
            await asyncio.sleep(self._max_age)
