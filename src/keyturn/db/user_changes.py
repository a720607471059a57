"""Which users a unit of work wrote, for the per-process user caches to forget at commit.

Every repository method that writes a ``users`` row, a user's roles or a role (a role's
deletion changes the roles of everyone who held it) marks it here; ``SqlUnitOfWork.commit``
keeps the marks of each commit and, when the unit of work is left (its connection back in
the pool), hands them to the app's callback (``services/accounts/user_cache.py`` publishes
them to every process; with Redis down it waits out the cache's expiry, which must not
hold a database connection). Nothing is handed on for work that is rolled back.
``tests/unit/test_user_change_marks.py`` proves that every such write in ``keyturn.db``
marks.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

__all__ = ["UserChanges", "UsersChanged"]

# Called after a commit with the users it changed; None means "possibly every user".
UsersChanged = Callable[[frozenset[uuid.UUID] | None], Awaitable[None]]


class UserChanges:
    """The marks of one unit of work: pending until its transaction commits."""

    __slots__ = ("_committed", "_committed_every", "_pending", "_pending_every")

    def __init__(self) -> None:
        self._pending: set[uuid.UUID] = set()
        self._pending_every = False
        self._committed: set[uuid.UUID] = set()
        self._committed_every = False

    def mark(self, user_id: uuid.UUID) -> None:
        self._pending.add(user_id)

    def mark_every(self) -> None:
        self._pending_every = True

    def committed(self) -> None:
        """The transaction committed: what was marked so far is a change to announce."""
        self._committed |= self._pending
        self._committed_every |= self._pending_every
        self._pending.clear()
        self._pending_every = False

    def take(self) -> frozenset[uuid.UUID] | None:
        """The committed changes (``frozenset()`` when none; None for every user); then
        forgets every mark, committed or not (what was not committed was rolled back)."""
        taken = None if self._committed_every else frozenset(self._committed)
        self._committed.clear()
        self._committed_every = False
        self._pending.clear()
        self._pending_every = False
        return taken
