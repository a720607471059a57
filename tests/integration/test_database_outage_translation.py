"""The db layer turns a database outage into ``DatabaseUnavailable`` (503) and nothing else.

Which errors count as an outage (``db/outage.py``), that a real bug (a unique violation)
leaves the unit of work unchanged, that the outage log is one line per interval, and, on
PostgreSQL's driver, that a closed port fails at once as ``DatabaseUnavailable`` with the
pool still usable afterwards. The live outage is tests/e2e/test_database_outage.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from keyturn.db.engine import CONNECT_TIMEOUT_SECONDS, create_engine, session_factory
from keyturn.db.migrate import upgrade
from keyturn.db.models import RoleRow
from keyturn.db.outage import LOG_INTERVAL_SECONDS, OutageLog, is_outage
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import utcnow
from keyturn.errors import DatabaseUnavailable, ServiceUnavailable, StoreUnavailable
from net import free_port

pytestmark = pytest.mark.anyio

# A hang detector, not a speed claim: a refused port must not wait out a 60 s default.
HANG_BOUND = 30.0
# The asyncpg tests need no server (a closed or a silent port); they run with the
# PostgreSQL tests all the same.
WITH_POSTGRES_TESTS = pytest.mark.skipif(
    not os.environ.get("KEYTURN_TEST_DATABASE_URL"), reason="needs KEYTURN_TEST_DATABASE_URL"
)


class _DriverError(Exception):
    """Stands in for an asyncpg error as SQLAlchemy's adapter wraps it (``sqlstate``)."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _wrapped(kind: type[sa_exc.DBAPIError], orig: BaseException, **kw: Any) -> sa_exc.DBAPIError:
    return kind("SELECT 1", None, orig, **kw)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (_wrapped(sa_exc.OperationalError, ConnectionRefusedError(111, "refused")), True),
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (_wrapped(sa_exc.InterfaceError, _DriverError("08003")), True),  # connection gone
        (_wrapped(sa_exc.OperationalError, _DriverError("57P03")), True),  # starting up
        (_wrapped(sa_exc.OperationalError, _DriverError("57P01")), True),  # admin shutdown
        (_wrapped(sa_exc.OperationalError, _DriverError("53300")), True),  # too many conns
        (_wrapped(sa_exc.DBAPIError, _DriverError("XX000"), connection_invalidated=True), True),
        (_wrapped(sa_exc.IntegrityError, _DriverError("23505")), False),  # a real bug
        (_wrapped(sa_exc.ProgrammingError, _DriverError("42P01")), False),  # a real bug
        (_wrapped(sa_exc.OperationalError, _DriverError("40001")), False),  # serialization
        (ValueError("not a database error"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_only_connection_failures_count_as_an_outage(error: BaseException, outage: bool) -> None:
    assert is_outage(error) is outage


def test_another_stores_error_is_no_database_outage() -> None:
    # A Redis failure that escapes a unit of work wraps a socket error too; it is not ours.
    error = StoreUnavailable("redis get failed")
    error.__cause__ = ConnectionRefusedError(111, "refused")
    assert not is_outage(error)


def test_the_outage_log_is_one_warning_per_interval() -> None:
    now = [100.0]
    outage_log = OutageLog(clock=lambda: now[0])
    error = _wrapped(sa_exc.OperationalError, ConnectionRefusedError(111, "refused"))
    with capture_logs() as logs:
        for _ in range(50):
            outage_log.record(error)
        now[0] += LOG_INTERVAL_SECONDS
        outage_log.record(error)
    assert [entry["event"] for entry in logs] == ["database_unavailable"] * 2
    assert logs[0]["cause"] == "ConnectionRefusedError"
    assert logs[0]["failures_since_last"] == 0
    assert logs[1]["failures_since_last"] == 49
    assert all(entry["log_level"] == "warning" for entry in logs)


async def test_a_real_bug_leaves_the_unit_of_work_unchanged(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bug.db'}"
    await upgrade(url)
    engine = create_engine(url)

    def role() -> RoleRow:
        return RoleRow(id=uuid.uuid4(), name="twice", permissions=[], created_at=utcnow())

    async def add_role() -> None:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            uow._db.add(role())
            await uow.commit()

    try:
        await add_role()
        # A unique violation is a bug in the caller, never an outage: it stays a 500.
        with pytest.raises(sa_exc.IntegrityError):
            await add_role()
    finally:
        await engine.dispose()


async def test_an_outage_inside_a_unit_of_work_becomes_database_unavailable(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}")
    try:
        refused = ConnectionRefusedError(111, "refused")
        with pytest.raises(DatabaseUnavailable) as caught:
            async with SqlUnitOfWork(session_factory(engine)):
                raise refused
        assert caught.value.__cause__ is refused
        assert isinstance(caught.value, ServiceUnavailable)
        assert (caught.value.status, caught.value.code) == (503, "service_unavailable")
        assert caught.value.retry_after >= 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
@WITH_POSTGRES_TESTS
async def test_a_closed_postgresql_port_fails_fast_as_database_unavailable() -> None:
    # No server needed: nothing listens on a free port (asyncpg gets ECONNREFUSED).
    url = f"postgresql+asyncpg://keyturn@127.0.0.1:{free_port()}/keyturn"
    engine = create_engine(url, pool_size=2)
    try:
        for _ in range(3):  # the pool does not get stuck after a failed connect
            async with asyncio.timeout(HANG_BOUND):
                with pytest.raises(DatabaseUnavailable) as caught:
                    async with SqlUnitOfWork(session_factory(engine)) as uow:
                        await uow.users.get(uuid.uuid4())
            assert is_outage(caught.value.__cause__ or caught.value)
        assert engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


@pytest.mark.postgres
@WITH_POSTGRES_TESTS
async def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout() -> None:
    # A socket that completes the TCP handshake (the kernel's backlog) but never speaks:
    # asyncpg's own default would wait 60 s, past the hang bound; the engine's 5 s does not.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://keyturn@127.0.0.1:{port}/keyturn", pool_size=1)
    try:
        async with asyncio.timeout(HANG_BOUND):
            with pytest.raises(DatabaseUnavailable) as caught:
                async with SqlUnitOfWork(session_factory(engine)) as uow:
                    await uow.users.get(uuid.uuid4())
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert CONNECT_TIMEOUT_SECONDS < HANG_BOUND
    finally:
        await engine.dispose()
        silent.close()
