"""The kid deny-list's per-process memory (services/signing_keys/deny_list.py, issue 18):
what it saves the store, and every way its answers stop being trusted (a revocation heard,
the feed lost, a second gone by)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from keyturn.errors import StoreUnavailable
from keyturn.infra.invalidation import MemoryChangeFeed
from keyturn.infra.revocation import MemoryRevocationStore
from keyturn.services.signing_keys.deny_list import KID_MAX_AGE_SECONDS, KidDenyList
from keyturn.services.signing_keys.revocation import deny_list_entry

pytestmark = pytest.mark.anyio

SESSION = "session:one"


class CountingStore(MemoryRevocationStore):
    """The in-process deny-list, counting the reads; ``during_read`` runs inside one."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []
        self.during_read: Any = None
        self.down = False

    async def revoked_among(self, sids: Sequence[str]) -> frozenset[str]:
        if self.down:
            raise StoreUnavailable("deny-list down")
        self.reads.append(list(sids))
        if self.during_read is not None:
            await self.during_read()
        return await super().revoked_among(sids)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _no_database() -> Any:
    raise AssertionError("the database is asked only when the store cannot answer")


@pytest.fixture
async def feed() -> AsyncIterator[MemoryChangeFeed]:
    channel = MemoryChangeFeed(f"keys-test-{uuid.uuid4().hex}")
    yield channel
    await channel.close()


def _deny_list(store: CountingStore, feed: MemoryChangeFeed | None, clock: Clock) -> KidDenyList:
    return KidDenyList(
        store,
        uow_factory=_no_database,
        retired_window=timedelta(seconds=900),
        changes=feed,
        clock=clock,
    )


async def test_an_answer_is_remembered_for_a_second_at_most(feed: MemoryChangeFeed) -> None:
    store, clock = CountingStore(), Clock()
    kids = _deny_list(store, feed, clock)
    assert not await kids.is_revoked("k1")
    assert not await kids.lists_any(["k1"])
    assert await kids.revoked_of(["k1"]) == set()
    assert store.reads == [[deny_list_entry("k1")]]
    # A revocation written to the store alone (no feed) is seen once the second is over.
    await store.revoke(deny_list_entry("k1"), 60)
    clock.now += KID_MAX_AGE_SECONDS
    assert await kids.is_revoked("k1")
    assert len(store.reads) == 2


async def test_a_revocation_heard_on_the_feed_is_in_force_at_once(feed: MemoryChangeFeed) -> None:
    store, clock = CountingStore(), Clock()
    here, there = _deny_list(store, feed, clock), _deny_list(store, feed, clock)
    assert not await here.is_revoked("k1")
    assert not await here.lists_any(["k1", "k2"])
    await there.publish("k1")
    assert await here.is_revoked("k1")
    assert await here.lists_any(["k1", "k2"])
    assert await here.revoked_of(["k1", "k2"]) == {"k1"}
    # Only the forgotten kid was asked again, and its answer is remembered in turn.
    assert store.reads[-1] == [deny_list_entry("k1")]
    reads = len(store.reads)
    assert await here.is_revoked("k1")
    assert len(store.reads) == reads


async def test_nothing_is_remembered_without_a_live_feed(feed: MemoryChangeFeed) -> None:
    store, clock = CountingStore(), Clock()
    for kids in (_deny_list(store, None, clock), _deny_list(store, feed, clock)):
        await feed.close()  # the feed's listeners hear ``lost``
        store.reads.clear()
        assert not await kids.is_revoked("k1")
        assert not await kids.is_revoked("k1")
        assert store.reads == [[deny_list_entry("k1")]] * 2


async def test_a_known_kid_leaves_only_the_session_to_read(feed: MemoryChangeFeed) -> None:
    store, clock = CountingStore(), Clock()
    kids = _deny_list(store, feed, clock)
    assert await kids.listed_with("k1", SESSION) == (False, False)
    assert store.reads == [[deny_list_entry("k1"), SESSION]]
    await store.revoke(SESSION, 60)
    assert await kids.listed_with("k1", SESSION) == (False, True)
    assert store.reads[-1] == [SESSION]


async def test_a_revocation_heard_while_the_session_is_read_counts(
    feed: MemoryChangeFeed,
) -> None:
    store, clock = CountingStore(), Clock()
    here, there = _deny_list(store, feed, clock), _deny_list(store, feed, clock)
    assert not await here.is_revoked("k1")

    async def revoke_meanwhile() -> None:
        store.during_read = None
        await there.publish("k1")

    store.during_read = revoke_meanwhile
    assert await here.listed_with("k1", SESSION) == (True, False)


async def test_a_store_outage_is_never_remembered(feed: MemoryChangeFeed) -> None:
    store, clock = CountingStore(), Clock()
    kids = _deny_list(store, feed, clock)
    store.down = True
    assert await kids.listed_with("k1", SESSION) is None
    assert not await kids.lists_any(["k1"])  # signing does not fail closed
    store.down = False
    assert store.reads == []
    await store.revoke(deny_list_entry("k1"), 60)
    assert await kids.is_revoked("k1")
