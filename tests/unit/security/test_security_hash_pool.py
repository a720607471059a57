"""HashPool: bounded, non-blocking password work with a fail-fast full queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import bcrypt
import pytest

from keyturn.errors import HashQueueFull
from keyturn.security.passwords import Argon2Params, HashPool, PasswordHasher, VerifyResult

FAST = Argon2Params(memory_kib=1024, time_cost=1)
# Only a safety net so a broken test cannot hang the run; no assertion depends on it.
HANG_GUARD_SECONDS = 10


class BlockingHasher(PasswordHasher):
    """A hasher whose ``hash`` blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(FAST)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.seen: list[str] = []

    def hash(self, password: str) -> str:
        self.seen.append(password)
        self.started.set()
        self.gate.wait(HANG_GUARD_SECONDS)
        return f"hashed:{password}"


class SpyHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(FAST)
        self.dummy_calls = 0

    def dummy_verify(self, password: str) -> None:
        self.dummy_calls += 1
        super().dummy_verify(password)


@pytest.fixture
def blocking() -> Iterator[BlockingHasher]:
    hasher = BlockingHasher()
    yield hasher
    hasher.gate.set()


@pytest.mark.anyio
async def test_full_pool_raises_without_calling_the_hasher(blocking: BlockingHasher) -> None:
    pool = HashPool(blocking, workers=1, queue_size=1)
    assert pool.capacity == 2
    first = asyncio.create_task(pool.hash("first"))
    second = asyncio.create_task(pool.hash("second"))
    await asyncio.to_thread(blocking.started.wait, HANG_GUARD_SECONDS)
    assert pool.in_flight == 2

    with pytest.raises(HashQueueFull) as caught:
        await pool.hash("third")
    assert caught.value.retry_after == 1
    assert pool.in_flight == 2

    blocking.gate.set()
    assert await asyncio.gather(first, second) == ["hashed:first", "hashed:second"]
    assert blocking.seen == ["first", "second"]  # "third" never reached the hasher
    assert pool.in_flight == 0
    pool.close()


@pytest.mark.anyio
async def test_cancelled_running_job_keeps_its_slot_until_the_work_ends(
    blocking: BlockingHasher,
) -> None:
    pool = HashPool(blocking, workers=1, queue_size=0)
    task = asyncio.create_task(pool.hash("pw"))
    await asyncio.to_thread(blocking.started.wait, HANG_GUARD_SECONDS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The hash is still running in the worker: its slot is still taken.
    assert pool.in_flight == 1
    with pytest.raises(HashQueueFull):
        await pool.hash("other")

    blocking.gate.set()
    pool.close()  # waits for the running job, so its done-callback has run
    assert pool.in_flight == 0


@pytest.mark.anyio
async def test_cancelled_queued_job_frees_its_slot(blocking: BlockingHasher) -> None:
    pool = HashPool(blocking, workers=1, queue_size=1)
    running = asyncio.create_task(pool.hash("running"))
    await asyncio.to_thread(blocking.started.wait, HANG_GUARD_SECONDS)
    queued = asyncio.create_task(pool.hash("queued"))
    await asyncio.sleep(0)
    assert pool.in_flight == 2
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert pool.in_flight == 1

    blocking.gate.set()
    assert await running == "hashed:running"
    pool.close()
    assert pool.in_flight == 0
    assert blocking.seen == ["running"]


@pytest.mark.anyio
async def test_unknown_user_gets_a_dummy_verify() -> None:
    hasher = SpyHasher()
    pool = HashPool(hasher, workers=1, queue_size=0)
    try:
        assert await pool.verify(None, "password") == VerifyResult(ok=False, needs_rehash=False)
        assert hasher.dummy_calls == 1
        assert pool.in_flight == 0
    finally:
        pool.close()


@pytest.mark.anyio
async def test_hash_and_verify_through_the_pool() -> None:
    pool = HashPool(PasswordHasher(FAST), workers=2, queue_size=4)
    try:
        stored = await pool.hash("pool password")
        assert await pool.verify(stored, "pool password") == VerifyResult(True, False)
        assert await pool.verify(stored, "wrong password") == VerifyResult(False, False)
        legacy = bcrypt.hashpw(b"pool password", bcrypt.gensalt(rounds=4)).decode()
        assert await pool.verify(legacy, "pool password") == VerifyResult(True, True)
        assert await pool.verify(legacy, "wrong password") == VerifyResult(False, False)
        assert pool.in_flight == 0
    finally:
        pool.close()


@pytest.mark.anyio
async def test_closed_pool_gives_the_slot_back() -> None:
    pool = HashPool(PasswordHasher(FAST), workers=1, queue_size=0)
    pool.close()
    with pytest.raises(RuntimeError):
        await pool.hash("pw")
    assert pool.in_flight == 0


@pytest.mark.parametrize(("workers", "queue_size"), [(0, 1), (1, -1)])
def test_pool_size_is_validated(workers: int, queue_size: int) -> None:
    with pytest.raises(ValueError, match="workers"):
        HashPool(PasswordHasher(FAST), workers=workers, queue_size=queue_size)
