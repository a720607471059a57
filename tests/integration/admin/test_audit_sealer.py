"""The audit sealer (issue 17 item 1): requests insert unchained rows, one sealer at a time
chains them, and ``verify`` reports what is not sealed yet.

Each test runs on a private database of its backend (``private_database_url``); the tests
that need two open transactions at once run on PostgreSQL only (SQLite has one writer).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.admin.test_audit_chain import seal, uow_factory
from keyturn.db.engine import session_factory
from keyturn.db.models import AuditEventRow
from keyturn.services.admin.audit_chain import SEAL_BATCH
from sql_spy import queries, statements_run_here

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


async def _insert(engine: AsyncEngine, count: int, *, now: datetime = T0) -> None:
    async with uow_factory(engine)() as uow:
        for number in range(count):
            await uow.audit.record(
                "login.failed", now=now, user_id=uuid.uuid4(), data={"n": number}
            )
        await uow.commit()


async def _rows(engine: AsyncEngine) -> list[AuditEventRow]:
    async with session_factory(engine)() as db:
        return list(await db.scalars(select(AuditEventRow).order_by(AuditEventRow.id)))


async def _verify(engine: AsyncEngine) -> tuple[bool, int, int, str | None]:
    async with uow_factory(engine)() as uow:
        report = await uow.audit.verify(batch_size=100)
    return report.intact, report.rows, report.unsealed, report.reason


async def test_a_request_inserts_unsealed_and_verify_reports_the_tail(engine: AsyncEngine) -> None:
    await _insert(engine, 3, now=T0)
    rows = await _rows(engine)
    assert [(row.seq, row.prev_hash, row.hash) for row in rows] == [(None, None, None)] * 3
    async with uow_factory(engine)() as uow:
        report = await uow.audit.verify(batch_size=10)
    assert report.intact
    assert (report.rows, report.unsealed, report.oldest_unsealed_at) == (0, 3, T0)

    assert await seal(engine) == 3
    assert await _verify(engine) == (True, 3, 0, None)
    assert await seal(engine) == 0  # nothing left: a pass over an empty tail is harmless


async def test_sealing_goes_in_batches_and_keeps_one_chain(engine: AsyncEngine) -> None:
    await _insert(engine, SEAL_BATCH + 7)
    assert await seal(engine) == SEAL_BATCH + 7
    await _insert(engine, 2)
    assert await seal(engine) == 2
    rows = await _rows(engine)
    assert [row.seq for row in rows] == list(range(1, SEAL_BATCH + 10))
    assert await _verify(engine) == (True, SEAL_BATCH + 9, 0, None)


async def test_a_reordered_pair_of_sealed_rows_is_detected(engine: AsyncEngine) -> None:
    """Swapping two rows' places in the chain breaks the links, though every row still
    hashes right on its own."""
    await _insert(engine, 5)
    await seal(engine)
    async with engine.begin() as connection:
        # Through a free slot: seq is unique.
        for seq, to in ((2, 99), (3, 2), (99, 3)):
            await connection.execute(
                update(AuditEventRow).where(AuditEventRow.seq == seq).values(seq=to)
            )
    intact, verified, _, reason = await _verify(engine)
    assert not intact
    assert verified == 1
    assert reason is not None
    assert "moved" in reason


async def test_unsealing_a_row_is_a_deletion_from_the_chain(engine: AsyncEngine) -> None:
    """Setting a sealed row back to unsealed hides it from the walk: caught as a gap."""
    await _insert(engine, 4)
    await seal(engine)
    async with engine.begin() as connection:
        await connection.execute(
            update(AuditEventRow)
            .where(AuditEventRow.seq == 2)
            .values(seq=None, prev_hash=None, hash=None)
        )
    intact, verified, unsealed, reason = await _verify(engine)
    assert not intact
    assert (verified, unsealed) == (1, 1)
    assert reason is not None
    assert "2..2" in reason


async def test_a_sealer_failing_mid_batch_loses_nothing(engine: AsyncEngine) -> None:
    """The sealer's transaction dies after chaining (a crash before COMMIT): every row
    stays, unsealed, and the next pass chains them all."""
    await _insert(engine, 10)

    class Crash(Exception):
        pass

    async def seal_then_crash() -> None:
        async with uow_factory(engine)() as uow:
            assert await uow.audit.seal_pending(limit=100) == 10
            raise Crash

    with pytest.raises(Crash):
        await seal_then_crash()
    assert [row.seq for row in await _rows(engine)] == [None] * 10
    assert await seal(engine) == 10
    assert await _verify(engine) == (True, 10, 0, None)


async def test_prune_seals_first_and_keeps_unsealed_newcomers_out(engine: AsyncEngine) -> None:
    """Prune waits for the lock, seals what is committed, then cuts a prefix."""
    await _insert(engine, 3, now=T0)
    await _insert(engine, 2, now=T0 + timedelta(days=400))
    async with uow_factory(engine)() as uow:
        result = await uow.audit.prune(before=T0 + timedelta(days=35), now=T0 + timedelta(days=400))
        await uow.commit()
    assert (result.deleted, result.pruned_through_seq) == (3, 3)
    assert await _verify(engine) == (True, 3, 0, None)


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("two writers at once: PostgreSQL only (SQLite has one writer)")


@pytest.mark.usefixtures("postgres_only")
async def test_only_one_sealer_at_a_time(engine: AsyncEngine) -> None:
    await _insert(engine, 4)
    async with uow_factory(engine)() as first, uow_factory(engine)() as second:
        assert await first.audit.seal_pending(limit=100) == 4
        # The first has not committed: the second finds the lock taken and skips.
        assert await second.audit.seal_pending(limit=100) is None
        await first.commit()
    assert await seal(engine) == 0
    assert await _verify(engine) == (True, 4, 0, None)


@pytest.mark.usefixtures("postgres_only")
async def test_a_row_committed_late_is_sealed_after_a_higher_id(engine: AsyncEngine) -> None:
    """Ids come from a sequence at INSERT time; commits happen in any order. A row whose
    transaction commits after a later id was sealed joins the chain behind it, never lost
    and never forking it."""
    slow = uow_factory(engine)()
    await slow.__aenter__()
    try:
        await slow.audit.record("login.failed", now=T0, data={"who": "slow"})
        await slow._db.flush()
        await _insert(engine, 1)
        assert await seal(engine) == 1
        await slow.commit()
    finally:
        await slow.__aexit__(None, None, None)
    assert await seal(engine) == 1
    rows = await _rows(engine)
    assert [row.data.get("who") for row in rows] == ["slow", None]
    assert [row.seq for row in rows] == [2, 1]
    assert await _verify(engine) == (True, 2, 0, None)


async def test_sealing_builds_no_orm_rows_and_one_update_per_batch(engine: AsyncEngine) -> None:
    """The sealer reads plain rows and writes one executemany UPDATE, whatever the batch
    size: loading and flushing each row as an ORM object was a sixth of a
    client_credentials worker's CPU (issue 18)."""
    loaded: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(target)

    event.listen(AuditEventRow, "load", on_load)
    try:
        shapes = []
        for count in (1, 40):
            await _insert(engine, count)
            with statements_run_here() as seen:
                assert await seal(engine) == count
            statements = queries(seen)
            updates = [sql for sql in statements if sql.lstrip().upper().startswith("UPDATE")]
            assert len(updates) == 1, statements
            shapes.append(statements)
    finally:
        event.remove(AuditEventRow, "load", on_load)
    assert loaded == []
    assert shapes[0] == shapes[1]
    assert await _verify(engine) == (True, 41, 0, None)
