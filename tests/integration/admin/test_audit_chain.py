"""The tamper-evident audit log (issue 4 item 6; DESIGN.md section 5; ASVS v5.0.0-16.4.2).

Rows are inserted unchained and sealed by the background sealer (issue 17); these tests
seal explicitly (``seal``) before they look at the chain. The sealer itself is tested in
``test_audit_sealer.py``.

Flows over HTTP run on the shared test database and only read it. Every test that edits or
deletes rows runs on a private database of the same backend (a SQLite file, or a PostgreSQL
database created and dropped here), so later tests still find an intact shared chain.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from alembic import command
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from helpers import PASSWORD, bearer, new_email, signup_login
from keyturn.config import Settings
from keyturn.db.audit_chain import CHECKPOINT, GENESIS, row_hash, verify_chain
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.migrate import alembic_config, upgrade
from keyturn.db.models import AuditEventRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import ChainReport, PruneResult
from keyturn.services.admin.audit_chain import AuditChainService

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def private_url(private_database_url: str) -> str:
    return private_database_url


async def seal(engine: AsyncEngine) -> int:
    """Chains every committed unsealed row (what the background sealer does each second)."""
    chain = AuditChainService(uow_factory=uow_factory(engine), retention_days=365)
    return await chain.seal(wait=True) or 0


def uow_factory(engine: AsyncEngine) -> Callable[[], SqlUnitOfWork]:
    sessions = session_factory(engine)
    return lambda: SqlUnitOfWork(sessions)


async def _record(
    engine: AsyncEngine, count: int, *, now: datetime | None = None, sealed: bool = True
) -> None:
    sessions = session_factory(engine)
    for number in range(count):
        async with SqlUnitOfWork(sessions) as uow:
            await uow.audit.record(
                "login.failed",
                now=now or datetime.now(UTC),
                user_id=uuid.uuid4(),
                session_id=uuid.uuid4() if number % 2 else None,
                ip="192.0.2.7",
                data={"factor": "password", "n": number, "nested": {"b": 1, "a": [1, 2]}},
            )
            await uow.commit()
    if sealed:
        await seal(engine)


async def _verify(engine: AsyncEngine, batch_size: int = 1000) -> ChainReport:
    async with SqlUnitOfWork(session_factory(engine)) as uow:
        return await uow.audit.verify(batch_size=batch_size)


async def _prune(engine: AsyncEngine, before: datetime, now: datetime) -> PruneResult:
    async with SqlUnitOfWork(session_factory(engine)) as uow:
        result = await uow.audit.prune(before=before, now=now)
        await uow.commit()
        return result


async def _rows(engine: AsyncEngine) -> list[AuditEventRow]:
    """Every row in chain order (unsealed ones last, in id order)."""
    async with session_factory(engine)() as db:
        return list(
            await db.scalars(
                select(AuditEventRow).order_by(
                    AuditEventRow.seq.is_(None), AuditEventRow.seq, AuditEventRow.id
                )
            )
        )


async def test_http_flows_leave_an_intact_chain(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Signup, a failed and a good login, logout: each audited, all chained (no PII)."""
    email = new_email()
    wrong = await client.post("/v1/auth/login", json={"email": email, "password": "nope" * 3})
    assert wrong.status_code == 401
    tokens = await signup_login(client, email)
    logout = await client.post("/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert logout.status_code == 204
    user_id = uuid.UUID(tokens["user"]["id"])

    engine = create_engine(settings.database_url)
    try:
        await seal(engine)
        report = await _verify(engine, batch_size=7)  # several batches: the walk streams
        async with session_factory(engine)() as db:
            mine = list(
                await db.scalars(
                    select(AuditEventRow)
                    .where(AuditEventRow.user_id == user_id)
                    .order_by(AuditEventRow.id)
                )
            )
    finally:
        await engine.dispose()
    assert report.intact, report
    assert report.rows >= 3
    assert report.head_hash is not None
    assert len(report.head_hash) == 64
    assert {"user.signup", "login.succeeded", "logout"} <= {row.type for row in mine}
    for row in mine:
        assert len(row.hash) == 64
        assert len(row.prev_hash) == 64
        # Rows hold ids only: the address appears nowhere in what is chained.
        assert email not in repr((row.type, row.ip, row.data))
        assert PASSWORD not in repr(row.data)


async def test_first_row_starts_at_genesis_and_each_links_to_the_last(
    engine: AsyncEngine,
) -> None:
    await _record(engine, 4)
    rows = await _rows(engine)
    assert [row.id for row in rows] == [1, 2, 3, 4]
    assert [row.seq for row in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    report = await _verify(engine, batch_size=3)
    assert report.intact
    assert (report.rows, report.head_id, report.head_hash) == (4, 4, rows[-1].hash)


async def test_empty_log_is_intact(engine: AsyncEngine) -> None:
    report = await _verify(engine)
    assert report.intact
    assert report.rows == 0


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"factor": "password", "n": 2, "nested": {"a": [1, 2], "b": 2}}},
        {"type": "login.succeeded"},
        {"ip": "198.51.100.1"},
        {"user_id": uuid.UUID(int=1)},
        {"occurred_at": T0},
        {"hash": "f" * 64},
    ],
    ids=["data", "type", "ip", "user_id", "occurred_at", "hash"],
)
async def test_an_edited_row_is_named(engine: AsyncEngine, change: dict[str, object]) -> None:
    """v5.0.0-16.4.2: editing any field of one row is detected at exactly that row."""
    await _record(engine, 5)
    async with engine.begin() as connection:
        await connection.execute(
            update(AuditEventRow).where(AuditEventRow.id == 3).values(**change)
        )
    report = await _verify(engine, batch_size=2)
    assert not report.intact
    assert report.bad_id == 3
    assert report.reason is not None
    assert "edited" in report.reason
    assert report.rows == 2


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(engine: AsyncEngine) -> None:
    """Re-hashing the edited row is not enough: the next row still names the old hash."""
    await _record(engine, 5)
    rows = await _rows(engine)
    async with engine.begin() as connection:
        await connection.execute(
            update(AuditEventRow).where(AuditEventRow.id == 3).values(type="login.succeeded")
        )
    async with session_factory(engine)() as db:
        row = await db.get(AuditEventRow, 3)
        assert row is not None
        row.hash = row_hash(row)
        await db.commit()
    report = await _verify(engine)
    assert report.bad_id == 4
    assert report.reason is not None
    assert "row 3" in report.reason
    assert rows[3].prev_hash != row.hash


async def test_a_deleted_middle_row_is_named(engine: AsyncEngine) -> None:
    await _record(engine, 5)
    async with engine.begin() as connection:
        await connection.execute(delete(AuditEventRow).where(AuditEventRow.id == 3))
    report = await _verify(engine)
    assert not report.intact
    assert report.bad_id == 4
    assert report.reason is not None
    assert "3..3" in report.reason
    assert "deleted" in report.reason


async def test_a_deleted_first_row_is_detected(engine: AsyncEngine) -> None:
    await _record(engine, 3)
    async with engine.begin() as connection:
        await connection.execute(delete(AuditEventRow).where(AuditEventRow.id == 1))
    report = await _verify(engine)
    assert report.bad_id == 2
    assert report.reason is not None
    assert "checkpoint" in report.reason


async def test_concurrent_appends_never_fork(engine: AsyncEngine) -> None:
    """Twenty transactions appending at once: one chain, positions without gaps, no shared
    parent."""
    sessions = session_factory(engine)

    async def append(number: int) -> None:
        async with SqlUnitOfWork(sessions) as uow:
            await uow.audit.record("login.failed", now=datetime.now(UTC), data={"n": number})
            await asyncio.sleep(0.001)  # hold the transaction open across a switch
            await uow.commit()

    await asyncio.gather(*(append(number) for number in range(20)))
    await seal(engine)
    rows = await _rows(engine)
    assert [row.seq for row in rows] == list(range(1, 21))
    assert len({row.prev_hash for row in rows}) == 20
    assert sorted(row.data["n"] for row in rows) == list(range(20))
    report = await _verify(engine)
    assert report.intact, report
    assert report.rows == 20


async def test_a_rolled_back_append_leaves_no_gap(engine: AsyncEngine) -> None:
    """A rolled-back insert may use up an id (a PostgreSQL sequence does), never a place in
    the chain."""
    sessions = session_factory(engine)
    await _record(engine, 1)
    async with SqlUnitOfWork(sessions) as uow:
        await uow.audit.record("login.failed", now=datetime.now(UTC))
        # no commit: rolled back on exit
    await _record(engine, 1)
    assert [row.seq for row in await _rows(engine)] == [1, 2]
    assert (await _verify(engine)).intact


async def test_concurrent_audited_requests_keep_one_chain(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """20 failed logins at once over HTTP (each audited) leave the shared chain unforked."""
    answers = await asyncio.gather(
        *(
            client.post("/v1/auth/login", json={"email": new_email(), "password": "wrong pw 1234"})
            for _ in range(20)
        )
    )
    assert {answer.status_code for answer in answers} == {401}
    engine = create_engine(settings.database_url)
    try:
        await seal(engine)
        report = await _verify(engine)
        async with session_factory(engine)() as db:
            parents = list(await db.scalars(select(AuditEventRow.prev_hash)))
    finally:
        await engine.dispose()
    assert report.intact, report
    assert len(parents) == len(set(parents))


async def test_prune_keeps_the_chain_verifiable(engine: AsyncEngine) -> None:
    """Retention deletes old rows behind a checkpoint; verification stays green."""
    with time_machine.travel(T0, tick=False):
        await _record(engine, 5, now=datetime.now(UTC))
    later = T0 + timedelta(days=400)
    with time_machine.travel(later, tick=False):
        await _record(engine, 2, now=datetime.now(UTC))
        anchor = (await _rows(engine))[4].hash
        now = datetime.now(UTC)
        result = await _prune(engine, before=now - timedelta(days=365), now=now)
    assert (result.deleted, result.pruned_through_seq, result.checkpoint_id) == (5, 5, 8)
    rows = await _rows(engine)
    assert [row.seq for row in rows] == [6, 7, 8]
    assert rows[0].prev_hash == anchor
    assert rows[-1].type == CHECKPOINT
    assert rows[-1].data == {"pruned_through_seq": 5, "anchor_hash": anchor}
    report = await _verify(engine)
    assert report.intact, report
    assert report.rows == 3

    # Appends continue the chain after the checkpoint.
    await _record(engine, 1)
    assert (await _verify(engine)).intact

    # A second prune, much later, prunes the first checkpoint too and still verifies.
    much_later = later + timedelta(days=400)
    result = await _prune(engine, before=much_later - timedelta(days=365), now=much_later)
    assert result.pruned_through_seq == 9
    assert [row.type for row in await _rows(engine)] == [CHECKPOINT]
    assert (await _verify(engine)).intact


async def test_prune_keeps_rows_inside_retention(engine: AsyncEngine) -> None:
    await _record(engine, 3, now=T0)
    result = await _prune(engine, before=T0, now=T0 + timedelta(days=1))
    assert result == PruneResult(deleted=0)
    assert len(await _rows(engine)) == 3


async def test_deleting_the_oldest_row_after_a_prune_is_detected(engine: AsyncEngine) -> None:
    await _record(engine, 4, now=T0)
    await _record(engine, 3, now=T0 + timedelta(days=400))
    await _prune(engine, before=T0 + timedelta(days=35), now=T0 + timedelta(days=400))
    assert (await _verify(engine)).intact
    async with engine.begin() as connection:
        await connection.execute(delete(AuditEventRow).where(AuditEventRow.id == 5))
    report = await _verify(engine)
    assert not report.intact
    assert report.bad_id == 6


async def test_a_forged_checkpoint_does_not_anchor(engine: AsyncEngine) -> None:
    """A checkpoint inserted by hand is not in the chain, so it is caught itself."""
    await _record(engine, 4, now=T0)
    rows = await _rows(engine)
    async with engine.begin() as connection:
        await connection.execute(delete(AuditEventRow).where(AuditEventRow.id <= 2))
        await connection.execute(
            update(AuditEventRow)
            .where(AuditEventRow.id == 4)
            .values(type=CHECKPOINT, data={"pruned_through_id": 2, "anchor_hash": rows[1].hash})
        )
    report = await _verify(engine)
    assert not report.intact
    assert report.bad_id == 4


def _downgrade_sync(connection: object, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_migration_chains_existing_rows(backend: str, private_url: str) -> None:
    """Rows written before 0004 (with an id gap) are chained by the migration in id order."""
    engine = create_engine(private_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(delete(AuditEventRow))
            # Back to 0003 through the migrations' own downgrades, so whatever later
            # revisions added (indexes, tables) is gone too and the upgrade can redo it.
            await connection.run_sync(_downgrade_sync, private_url, "0003")
        async with engine.begin() as connection:
            for row_id in (1, 2, 5):
                await connection.execute(
                    text(
                        "INSERT INTO audit_events (id, occurred_at, type, user_id, session_id,"
                        " ip, data) VALUES (:id, :at, 'login.failed', NULL, NULL, NULL, :data)"
                    ),
                    {
                        "id": row_id,
                        "at": T0 if backend == "postgres" else T0.replace(tzinfo=None),
                        "data": '{"z": 1, "a": "x"}',
                    },
                )
        await upgrade(private_url)
        rows = await _rows(engine)
        assert [row.id for row in rows] == [1, 2, 5]
        assert rows[0].prev_hash == GENESIS
        async with session_factory(engine)() as db:
            report = await verify_chain(db)
        assert report.intact, report
        assert report.rows == 3
        # The id sequence continues after the highest id (0016 moved it there).
        await _record(engine, 1)
        rows = await _rows(engine)
        assert [(row.id, row.seq) for row in rows] == [(1, 1), (2, 2), (5, 5), (6, 6)]
        assert (await _verify(engine)).intact
    finally:
        await engine.dispose()
