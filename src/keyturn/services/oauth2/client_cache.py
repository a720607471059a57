"""Per-process cache of OAuth clients and their secret digests (issue 18 item 2).

The machine-to-machine hot path (client_credentials, introspection) authenticates a
client on every request; its registration changes rarely. This cache keeps
``(OAuthClient, secret digest)`` as ``uow.clients.find`` returns it, so a warm process
answers without the database, and every replica forgets a client the moment any replica
changes it (``ClientService`` publishes every write). It keeps the rules of
``services/change_cache.py``, with an expiry of ``MAX_AGE_SECONDS`` (5 s): the price, one
read per client per 5 s per process, is nothing on a path that serves thousands a second.

Unknown clients are not cached: a client created on one replica works on every other at
once, whatever the feed. They still cost a database read (and the dummy digest compare in
``authenticate``), as before. client_ids are public identifiers (RFC 6749 section 2.2), so
a known id answering faster than an unknown one reveals nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from keyturn.domain import OAuthClient
from keyturn.services.change_cache import ChangeFedCache, ChangeFeed
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["MAX_AGE_SECONDS", "MAX_ENTRIES", "ClientCache", "FoundClient"]

FoundClient = tuple[OAuthClient, str | None]
MAX_AGE_SECONDS = 5.0
MAX_ENTRIES = 1024


class ClientCache(ChangeFedCache[FoundClient]):
    """The clients this process authenticated lately, by client_id.

    Args:
        changes: The client change feed; the cache attaches itself to it.
        read_uow_factory: Pure-read units of work for a miss.
        max_age: Seconds an entry is trusted at most; ``MAX_AGE_SECONDS`` when None (read
            at construction, so a statement-count test can lift it).
        max_entries: Bound on the number of entries.
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        *,
        changes: ChangeFeed,
        read_uow_factory: UnitOfWorkFactory,
        max_age: float | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            changes=changes,
            max_age=MAX_AGE_SECONDS if max_age is None else max_age,
            max_entries=max_entries,
            clock=clock,
        )
        self._read_uow_factory = read_uow_factory

    async def find(self, client_id: str) -> FoundClient | None:
        """``uow.clients.find(client_id)``, from the cache when it may be trusted."""

        async def load() -> FoundClient | None:
            async with self._read_uow_factory() as uow:
                return await uow.clients.find(client_id)

        return await self.find_or_load(client_id, load)
