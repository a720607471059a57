"""Which users a unit of work wrote, for the per-process user caches to forget at commit.

Every repository method that writes a ``users`` row, a user's roles or a role (a role's
deletion changes the roles of everyone who held it) marks it here; ``SqlUnitOfWork.commit``
hands the marks to the app's callback once the transaction is committed
(``services/accounts/user_cache.py`` publishes them to every process). Nothing is handed
on for work that is rolled back. ``tests/unit/test_user_change_marks.py`` proves that every
such write in ``keyturn.db`` marks.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

__all__ = ["UserChanges", "UsersChanged"]

# Called after a commit with the users it changed; None means "possibly every user".
UsersChanged = Callable[[frozenset[uuid.UUID] | None], Awaitable[None]]


class UserChanges:
    """The marks of one unit of work."""

    __slots__ = ("_every", "_ids")

    def __init__(self) -> None:
        self._ids: set[uuid.UUID] = set()
        self._every = False

    def mark(self, user_id: uuid.UUID) -> None:
        self._ids.add(user_id)

    def mark_every(self) -> None:
        self._every = True

    def take(self) -> frozenset[uuid.UUID] | None:
        """The marks so far (``frozenset()`` when none; None for every user); then clears."""
        taken = None if self._every else frozenset(self._ids)
        self._ids.clear()
        self._every = False
        return taken
