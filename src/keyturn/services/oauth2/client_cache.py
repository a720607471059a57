"""Per-process cache of OAuth clients and their secret digests (issue 18 item 2).

The machine-to-machine hot path (client_credentials, introspection) authenticates a
client on every request; its registration changes rarely. This cache keeps
``(OAuthClient, secret digest)`` as ``uow.clients.find`` returns it, so a warm process
answers without the database, and every replica forgets a client the moment any replica
changes it. The rules, and why each holds:

1. Only while the change feed is live. Entries are served only while the feed
   (``ClientChanges``: Redis pub/sub, or in-process) confirms it hears every change. On a
   disconnect the feed calls ``lost``: everything is dropped and the cache is bypassed
   (database reads, as without a cache) until SUBSCRIBE is confirmed again (``live``).
   Pub/sub keeps no history, so nothing held across a gap can be trusted.
2. Every write publishes after its commit and before its answer (``ClientService``): a
   replica that reads after the message reads the committed row. A read that started
   before the message may bring the old row back after it; so a fill is stored only if
   no change (of any client) and no loss was heard while it read (``_epoch``). Why the
   very next request on another replica sees the change: Redis queues the message on
   every subscriber's connection before it answers PUBLISH, the writer answers its caller
   only after that, and the feed applies a message in the same step in which it reads it
   (``infra/invalidation.py``); a request that reaches the replica afterwards makes its
   Redis throttle call first, by which time the message is in that replica's socket. This
   is an ordering in practice, not a barrier; rule 3 bounds what it cannot cover.
3. Entries expire after ``MAX_AGE_SECONDS`` (5 s) whatever the feed says. It bounds the
   one case pub/sub cannot see: a message that never left its publisher (the publisher
   lost Redis while the subscribers kept it), or a subscription that went silently dead
   before the heartbeat noticed (``infra/invalidation.py``, 3 s). A publisher that could
   not publish waits those 5 s before it answers (``publish_change``), so when the admin
   reads "rotated", no replica accepts the old secret. The price, one read per client per
   5 s per process, is nothing on a path that serves thousands a second.
4. Unknown clients are not cached: a client created on one replica works on every other
   at once, whatever the feed. They still cost a database read (and the dummy digest
   compare in ``authenticate``), as before. client_ids are public identifiers (RFC 6749
   section 2.2), so a known id answering faster than an unknown one reveals nothing.
5. At most ``MAX_ENTRIES`` clients (least recently used first out): a flood of distinct
   client_ids cannot grow the process.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from keyturn.domain import OAuthClient
from keyturn.errors import StoreUnavailable
from keyturn.services.oauth2.ports import ClientChanges
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["MAX_AGE_SECONDS", "MAX_ENTRIES", "ClientCache", "FoundClient"]

log = structlog.get_logger(__name__)

FoundClient = tuple[OAuthClient, str | None]
MAX_AGE_SECONDS = 5.0
MAX_ENTRIES = 1024


class ClientCache:
    """The clients this process authenticated lately; a ``ClientChangeListener``.

    Args:
        changes: The change feed; the cache attaches itself to it.
        read_uow_factory: Pure-read units of work for a miss.
        max_age: Seconds an entry is trusted at most (rule 3); ``MAX_AGE_SECONDS`` when
            None (read at construction, so a statement-count test can lift it).
        max_entries: Bound on the number of entries (rule 5).
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        *,
        changes: ClientChanges,
        read_uow_factory: UnitOfWorkFactory,
        max_age: float | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._changes = changes
        self._read_uow_factory = read_uow_factory
        self._max_age = MAX_AGE_SECONDS if max_age is None else max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, FoundClient]] = OrderedDict()
        # Fail closed until the feed says it is live (rule 1).
        self._live = False
        # Bumped by every change or loss heard: a fill that saw it move is not stored (rule 2).
        self._epoch = 0
        changes.attach(self)

    # -- ClientChangeListener (called by the feed, synchronously) --------------------------

    def changed(self, client_id: str) -> None:
        self._epoch += 1
        self._entries.pop(client_id, None)

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

    def cached(self, client_id: str) -> FoundClient | None:
        """The entry for ``client_id`` if it may be trusted now (no database)."""
        if not self._live:
            return None
        entry = self._entries.get(client_id)
        if entry is None:
            return None
        stored_at, found = entry
        if self._clock() - stored_at >= self._max_age:
            del self._entries[client_id]
            return None
        self._entries.move_to_end(client_id)
        return found

    async def find(self, client_id: str) -> FoundClient | None:
        """``uow.clients.find(client_id)``, from the cache when it may be trusted."""
        found = self.cached(client_id)
        if found is not None:
            return found
        epoch = self._epoch
        async with self._read_uow_factory() as uow:
            found = await uow.clients.find(client_id)
        if found is not None and self._live and self._epoch == epoch:
            self._store(client_id, found)
        return found

    def _store(self, client_id: str, found: FoundClient) -> None:
        self._entries[client_id] = (self._clock(), found)
        self._entries.move_to_end(client_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    # -- writes ----------------------------------------------------------------------------

    async def publish_change(self, client_id: str) -> None:
        """Announces a committed change of ``client_id`` to every process (rule 2).

        Called after the commit and before the answer. This process forgets at once; when
        the feed cannot publish, the answer waits until every other process's entry has
        expired (rule 3), so the change is in force everywhere once the caller hears of it.
        """
        self.changed(client_id)
        try:
            await self._changes.publish(client_id)
        except StoreUnavailable as exc:
            log.warning("client_change_unpublished", error=str(exc), wait_seconds=self._max_age)
            await asyncio.sleep(self._max_age)
