"""HashPool threads run at a lower OS priority than the event loop (issue 18, item 5).

Read back from the kernel (``/proc/self/task/<tid>/stat``), never timed: the nice value of
each hash thread is the process's own plus the pool's ``niceness``, and the thread that
runs the event loop keeps its priority.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from keyturn.security.passwords import (
    HASH_THREAD_NICENESS,
    Argon2Params,
    HashPool,
    PasswordHasher,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux behaviour"
)

FAST = Argon2Params(memory_kib=1024, time_cost=1)
# Only a safety net so a broken test cannot hang the run; no assertion depends on it.
HANG_GUARD_SECONDS = 10


def nice_of(tid: int) -> int:
    """Field 19 of proc(5) ``stat``; counted after the ``)`` that ends the command name."""
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


class TidHasher(PasswordHasher):
    """Records, from inside the worker thread, its thread id and its nice value."""

    def __init__(self, together: int = 1) -> None:
        super().__init__(FAST)
        self.seen: dict[int, int] = {}
        # Holds each job until ``together`` jobs run at once: they are on distinct threads.
        self.barrier = threading.Barrier(together)

    def hash(self, password: str) -> str:
        tid = threading.get_native_id()
        self.seen[tid] = nice_of(tid)
        self.barrier.wait(HANG_GUARD_SECONDS)
        return password


@pytest.mark.anyio
async def test_every_hash_thread_is_niced_and_the_event_loop_is_not() -> None:
    loop_tid = threading.get_native_id()
    before = nice_of(loop_tid)
    hasher = TidHasher(together=2)
    pool = HashPool(hasher, workers=2, queue_size=0)
    try:
        await asyncio.gather(pool.hash("a"), pool.hash("b"))
    finally:
        pool.close()
    assert len(hasher.seen) == 2
    assert loop_tid not in hasher.seen
    expected = min(19, before + HASH_THREAD_NICENESS)
    assert set(hasher.seen.values()) == {expected}
    assert nice_of(loop_tid) == before


@pytest.mark.anyio
async def test_the_default_is_a_real_lowering() -> None:
    # The tested behaviour would be vacuous at niceness 0 or with the test run at 19.
    assert HASH_THREAD_NICENESS >= 10
    before = nice_of(threading.get_native_id())
    if before > 19 - HASH_THREAD_NICENESS:
        pytest.skip(f"the test process already runs at nice {before}")
    hasher = TidHasher()
    pool = HashPool(hasher, workers=1, queue_size=0)
    try:
        await pool.hash("x")
    finally:
        pool.close()
    assert list(hasher.seen.values()) == [before + HASH_THREAD_NICENESS]


@pytest.mark.anyio
async def test_niceness_zero_leaves_the_threads_alone() -> None:
    before = nice_of(threading.get_native_id())
    hasher = TidHasher()
    pool = HashPool(hasher, workers=1, queue_size=0, niceness=0)
    try:
        await pool.hash("x")
    finally:
        pool.close()
    assert list(hasher.seen.values()) == [before]


@pytest.mark.parametrize("niceness", [-1, 20])
def test_niceness_is_validated(niceness: int) -> None:
    with pytest.raises(ValueError, match="niceness"):
        HashPool(PasswordHasher(FAST), workers=1, queue_size=0, niceness=niceness)
