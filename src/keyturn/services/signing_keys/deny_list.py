"""The shared deny-list of revoked signing-key kids: every replica refuses a revoked key's
tokens at once. The database state is the truth it is rebuilt from, and asked when the
list is unreachable.

Each process also remembers, for a second at most, whether each of its few kids is listed
(issue 18): the hot paths ask about the same kids thousands of times a second, and that
read was one of the two Redis round trips of a client_credentials token and of an
introspection. The memory keeps the rules of ``services/change_cache.py`` on the
``keys:revoked`` feed: trusted only while the feed is live, forgotten on every replica the
moment a key is revoked, and never older than ``KID_MAX_AGE_SECONDS``, the second DESIGN.md
section 4 allows a revocation to reach every replica whatever the feed does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import timedelta

import structlog

from keyturn.domain import utcnow
from keyturn.errors import StoreUnavailable
from keyturn.observability.metrics import REVOCATION_STORE_ERRORS
from keyturn.services.accounts import RevocationStore
from keyturn.services.change_cache import ChangeFedCache, ChangeFeed
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.revocation import deny_list_entry

log = structlog.get_logger(__name__)

# How long a kid's answer is trusted at most (services/change_cache.py rule 3).
KID_MAX_AGE_SECONDS = 1.0
# Only kids of this process's own keys are ever asked about (after a signature verified,
# before signing, for the JWKS): a handful.
_KIDS_REMEMBERED = 64


class KidDenyList:
    """Revoked kids on the shared store (None: one process, which reloads on revoke).

    Args:
        store: The shared deny-list (Redis with several replicas), or None.
        uow_factory: Opens a unit of work (the fallback when the store cannot answer).
        retired_window: How long a revoked kid stays listed (every replica has reloaded
            without the key by then).
        changes: The feed of revoked kids; None: every question goes to the store.
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        store: RevocationStore | None,
        *,
        uow_factory: UnitOfWorkFactory,
        retired_window: timedelta,
        changes: ChangeFeed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._uow_factory = uow_factory
        self._window = retired_window
        # kid -> listed, as the store answered it lately.
        self._known: ChangeFedCache[bool] | None = (
            ChangeFedCache(
                changes=changes,
                max_age=KID_MAX_AGE_SECONDS,
                max_entries=_KIDS_REMEMBERED,
                clock=clock,
            )
            if store is not None and changes is not None
            else None
        )

    @property
    def ttl(self) -> int:
        """Seconds a revoked kid stays on the shared deny-list."""
        return int(self._window.total_seconds())

    def _recall(self, kid: str) -> bool | None:
        return None if self._known is None else self._known.cached(kid)

    def _recall_all(self, kids: Iterable[str]) -> tuple[set[str], list[str]]:
        """The kids remembered as listed, and those not remembered at all."""
        known = {kid: self._recall(kid) for kid in kids}
        listed = {kid for kid, answer in known.items() if answer}
        return listed, [kid for kid, answer in known.items() if answer is None]

    async def _ask(
        self, store: RevocationStore, kids: list[str], others: Iterable[str] = ()
    ) -> tuple[set[str], set[str]]:
        """Which of ``kids`` and of the ``other`` entries the store lists, in one read;
        the kids' answers are remembered.

        Raises:
            StoreUnavailable: The store cannot answer.
        """
        since = self._known.epoch if self._known is not None else 0
        entries = {deny_list_entry(kid): kid for kid in kids}
        listed = await store.revoked_among([*entries, *others])
        kids_listed = {entries[entry] for entry in listed if entry in entries}
        if self._known is not None:
            self._known.fill({kid: kid in kids_listed for kid in kids}, since=since)
        return kids_listed, set(listed).difference(entries)

    async def is_revoked(self, kid: str) -> bool:
        if self._store is None:
            return False  # one process: revoke() has already reloaded this one
        known = self._recall(kid)
        if known is not None:
            return known
        try:
            return bool((await self._ask(self._store, [kid]))[0])
        except StoreUnavailable:
            # Fail closed: the database is the truth when the shared list cannot answer.
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            async with self._uow_factory() as uow:
                record = await uow.signing_keys.get(kid)
            return record is None or record.state == "revoked"

    async def revoked_of(self, kids: list[str]) -> set[str]:
        """Which of ``kids`` are revoked, in one read at most (the JWKS asks on every
        request); the database answers, key by key, when the shared list cannot (fail
        closed)."""
        if self._store is None or not kids:
            return set()
        listed, unknown = self._recall_all(kids)
        if not unknown:
            return listed
        try:
            return listed | (await self._ask(self._store, unknown))[0]
        except StoreUnavailable:
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            # One unit of work for every key, not a second store attempt per key.
            async with self._uow_factory() as uow:
                records = {kid: await uow.signing_keys.get(kid) for kid in unknown}
        return listed | {kid for kid, r in records.items() if r is None or r.state == "revoked"}

    async def listed_with(self, kid: str, entry: str) -> tuple[bool, bool] | None:
        """Whether ``kid`` and another deny-list ``entry`` (a session) are listed, in one
        read (issue 18); None when the store cannot answer it so, and the caller asks each
        the usual way, each with its own database fallback."""
        if self._store is None:
            return None
        known = self._recall(kid)
        try:
            kids_listed, others = await self._ask(
                self._store, [] if known is not None else [kid], [entry]
            )
        except StoreUnavailable:
            return None
        if known is not None:
            # Asked again after the read: a revocation heard meanwhile is news.
            known = self._recall(kid)
            listed = known if known is not None else await self.is_revoked(kid)
        else:
            listed = kid in kids_listed
        return listed, entry in others

    async def lists_any(self, kids: Iterable[str]) -> bool:
        """Whether one of ``kids`` is listed; an outage answers False (signing is not where
        revocation fails closed: every verifier refuses the key's tokens)."""
        if self._store is None:
            return False
        listed, unknown = self._recall_all(kids)
        if listed or not unknown:
            return bool(listed)
        try:
            # One read for every kid not remembered (issue 18: each signed token asks this).
            return bool((await self._ask(self._store, unknown))[0])
        except StoreUnavailable:
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
        return False

    async def publish(self, kid: str) -> None:
        if self._store is None:
            return
        try:
            # Listed until every replica has reloaded without the key (the database state
            # keeps it out after that); restore_deny_list re-lists it after a Redis reset.
            await self._store.revoke(deny_list_entry(kid), self.ttl)
        except StoreUnavailable:
            # Replicas reading the database (list unreachable) or reloading see it anyway.
            REVOCATION_STORE_ERRORS.labels("revoke").inc()
            log.error("deny_list_write_failed", kid=kid)
        if self._known is not None:
            # After the entry is written: a replica that forgets the kid and asks again
            # finds it listed. When the feed cannot tell them, this waits out the memory.
            await self._known.publish_change(kid)

    async def entries(self) -> list[tuple[str, int]]:
        """Kids revoked recently enough to be listed, as entries with the seconds left."""
        now = utcnow()
        async with self._uow_factory() as uow:
            revoked = await uow.signing_keys.revoked_since(now - self._window)
        return [
            (deny_list_entry(kid), max(self.ttl - int((now - revoked_at).total_seconds()), 1))
            for kid, revoked_at in revoked
        ]
