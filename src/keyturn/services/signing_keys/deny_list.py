"""The shared deny-list of revoked signing-key kids: every replica refuses a revoked key's
tokens at once. The database state is the truth it is rebuilt from, and asked when the
list is unreachable."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import structlog

from keyturn.domain import utcnow
from keyturn.errors import StoreUnavailable
from keyturn.observability.metrics import REVOCATION_STORE_ERRORS
from keyturn.services.accounts import RevocationStore
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys.revocation import deny_list_entry

log = structlog.get_logger(__name__)


class KidDenyList:
    """Revoked kids on the shared store (None: one process, which reloads on revoke).

    Args:
        store: The shared deny-list (Redis with several replicas), or None.
        uow_factory: Opens a unit of work (the fallback when the store cannot answer).
        retired_window: How long a revoked kid stays listed (every replica has reloaded
            without the key by then).
    """

    def __init__(
        self,
        store: RevocationStore | None,
        *,
        uow_factory: UnitOfWorkFactory,
        retired_window: timedelta,
    ) -> None:
        self._store = store
        self._uow_factory = uow_factory
        self._window = retired_window

    @property
    def ttl(self) -> int:
        """Seconds a revoked kid stays on the shared deny-list."""
        return int(self._window.total_seconds())

    async def is_revoked(self, kid: str) -> bool:
        if self._store is None:
            return False  # one process: revoke() has already reloaded this one
        try:
            return await self._store.is_revoked(deny_list_entry(kid))
        except StoreUnavailable:
            # Fail closed: the database is the truth when the shared list cannot answer.
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            async with self._uow_factory() as uow:
                record = await uow.signing_keys.get(kid)
            return record is None or record.state == "revoked"

    async def revoked_of(self, kids: list[str]) -> set[str]:
        """Which of ``kids`` are revoked, in one read (the JWKS asks on every request);
        the database answers, key by key, when the shared list cannot (fail closed)."""
        if self._store is None or not kids:
            return set()
        entries = {deny_list_entry(kid): kid for kid in kids}
        try:
            listed = await self._store.revoked_among(list(entries))
        except StoreUnavailable:
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            # One unit of work for every key, not a second store attempt per key.
            async with self._uow_factory() as uow:
                records = {kid: await uow.signing_keys.get(kid) for kid in kids}
            return {kid for kid, r in records.items() if r is None or r.state == "revoked"}
        return {entries[entry] for entry in listed}

    async def listed_with(self, kid: str, entry: str) -> tuple[bool, bool] | None:
        """Whether ``kid`` and another deny-list ``entry`` (a session) are listed, in one
        read (issue 18); None when the store cannot answer it so, and the caller asks each
        the usual way, each with its own database fallback."""
        if self._store is None:
            return None
        kid_entry = deny_list_entry(kid)
        try:
            listed = await self._store.revoked_among([kid_entry, entry])
        except StoreUnavailable:
            return None
        return kid_entry in listed, entry in listed

    async def lists_any(self, kids: Iterable[str]) -> bool:
        """Whether one of ``kids`` is listed; an outage answers False (signing is not where
        revocation fails closed: every verifier refuses the key's tokens)."""
        if self._store is None:
            return False
        try:
            # One read for every kid (issue 18: each signed token asks this).
            return bool(await self._store.revoked_among([deny_list_entry(kid) for kid in kids]))
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

    async def entries(self) -> list[tuple[str, int]]:
        """Kids revoked recently enough to be listed, as entries with the seconds left."""
        now = utcnow()
        async with self._uow_factory() as uow:
            revoked = await uow.signing_keys.revoked_since(now - self._window)
        return [
            (deny_list_entry(kid), max(self.ttl - int((now - revoked_at).total_seconds()), 1))
            for kid, revoked_at in revoked
        ]
