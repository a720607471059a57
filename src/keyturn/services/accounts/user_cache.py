"""Per-process cache of the signed-in user's profile, for ``GET /v1/me`` (issue 18).

``/v1/me`` read the user's row on every call: about 410 us of its roughly 1 ms of CPU,
for a row that changes rarely. This cache keeps the ``User`` as ``uow.users.get`` returns
it, minus the password hash (a display copy: nothing that checks a credential reads it),
under the rules of ``services/change_cache.py``:

- every write to a user's row or roles, and every change of a role, is marked by the
  repository that makes it and published by the unit of work after its commit
  (``db/user_changes.py``; ``tests/unit/test_user_change_marks.py`` proves every such
  write in ``keyturn.db`` marks), so every replica forgets the user at once;
- only ``UserService.profile`` reads it, the display of the caller's own account. Every
  decision on a credential (login, API keys, refresh, step-up, a password change) reads
  the database as before. A disabled or deleted account's sessions are revoked by the
  same change (the deny-list), so its tokens are refused before this cache is asked;
- entries expire after ``MAX_AGE_SECONDS`` whatever the feed says; a writer whose change
  could not be published answers only after that long.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

from keyturn.domain import User
from keyturn.services.change_cache import EVERY_KEY, ChangeFedCache, ChangeFeed
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["MAX_AGE_SECONDS", "MAX_ENTRIES", "UserCache"]

MAX_AGE_SECONDS = 10.0
# About 1 KB a user: a few MB at most per process.
MAX_ENTRIES = 4096


class UserCache(ChangeFedCache[User]):
    """Profiles of the users this process served lately, by user id.

    Args:
        changes: The user change feed; the cache attaches itself to it.
        read_uow_factory: Pure-read units of work for a miss.
        max_age: Seconds an entry is trusted at most.
        max_entries: Bound on the number of entries.
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        *,
        changes: ChangeFeed,
        read_uow_factory: UnitOfWorkFactory,
        max_age: float = MAX_AGE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(changes=changes, max_age=max_age, max_entries=max_entries, clock=clock)
        self._read_uow_factory = read_uow_factory

    async def profile(self, user_id: uuid.UUID) -> User | None:
        """``uow.users.get(user_id)`` without its password hash, cached."""

        async def load() -> User | None:
            async with self._read_uow_factory() as uow:
                user = await uow.users.get(user_id)
            return None if user is None else dataclasses.replace(user, password_hash=None)

        return await self.find_or_load(str(user_id), load)

    async def publish_users(self, changed: frozenset[uuid.UUID] | None) -> None:
        """What a unit of work committed (``db/user_changes.py``): None for every user."""
        await self.publish_changes(
            (EVERY_KEY,) if changed is None else tuple(str(user_id) for user_id in changed)
        )
