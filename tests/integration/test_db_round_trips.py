"""Database round trips on the hot paths, and recovery from dropped connections.

``GET /v1/me`` costs one SQL statement and, on PostgreSQL, no transaction around it (no
BEGIN / ROLLBACK, no pre-ping), and none while the user cache is warm: a regression shows
up here as a count, never as a time.
On a warm process a client_credentials grant and the introspection of a JWT access token
cost no statement at all (issue 18: the client cache, the batched audit row).
Connections the server terminates (``pg_terminate_backend``, a restart) are replaced
without any request failing. Read-only units of work refuse writes. A refresh rotation,
a client_credentials grant and a login are bounded the same way (statements and
transactions, never times).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, lifespan, running_app, signup_login
from keyturn.app import create_app
from keyturn.db.engine import (
    ReadOnlyViolation,
    create_engine,
    read_session_factory,
    session_factory,
)
from keyturn.db.models import UserRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import AuditEvent, AuditFilter, utcnow
from keyturn.services import audit_batch
from keyturn.services.oauth2 import client_cache
from oauth_helpers import register

pytestmark = pytest.mark.anyio

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _in_audit_batch() -> bool:
    # The batched audit rows are inserted by their own background task (every 0.1 s, not
    # in any request): its statements are counted apart, under "batch_statements".
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.get_name() == audit_batch.FLUSH_TASK_NAME


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """SQL statements, and transactions the driver had to BEGIN, on every engine."""
    counts = {"statements": 0, "transactions": 0, "batch_statements": 0}

    def before_cursor_execute(*args: Any) -> None:
        statement: str = args[2]
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            counts["batch_statements" if _in_audit_batch() else "statements"] += 1

    def begin(connection: Any) -> None:
        # An autocommit connection sends no BEGIN (asyncpg) even though SQLAlchemy's
        # Connection still marks a logical one.
        if _in_audit_batch():
            return
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            counts["transactions"] += 1

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Engine, "begin", begin)
    try:
        yield counts
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)
        event.remove(Engine, "begin", begin)


@pytest.fixture(autouse=True)
def _cache_outlives_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client cache's 5 s expiry is proven by its own unit test; here it must not fall
    # inside a counting window on a slow machine.
    monkeypatch.setattr(client_cache, "MAX_AGE_SECONDS", 3600.0)


def quiet(make_settings: SettingsFactory, **overrides: Any) -> Any:
    # No outbox polling, key schedule or audit sealing in the background while statements
    # are counted.
    return make_settings(
        outbox_worker="off",
        key_rotation_check_seconds=86400,
        key_cache_seconds=3000,
        audit_seal_seconds=3600,
        **overrides,
    )


async def test_get_me_costs_one_statement_and_no_transaction_then_none_while_warm(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with running_app(quiet(make_settings)) as http:
        headers = bearer((await signup_login(http))["access_token"])
        with counting() as cold:
            assert (await http.get("/v1/me", headers=headers)).status_code == 200
        with counting() as warm:
            for _ in range(5):
                answer = await http.get("/v1/me", headers=headers)
                assert answer.status_code == 200, answer.text
        # A change of the user empties the cache: the next read goes to the database.
        renamed = await http.patch("/v1/me", json={"name": "Renamed"}, headers=headers)
        assert renamed.status_code == 200, renamed.text
        with counting() as changed:
            answer = await http.get("/v1/me", headers=headers)
        assert answer.json()["name"] == "Renamed"
    # One primary-key read (roles joined in) fills the user cache; then none.
    assert cold["statements"] == 1, cold
    assert warm["statements"] == 0, warm
    assert changed["statements"] == 1, changed
    if backend == "postgres":
        # No BEGIN / ROLLBACK around it.
        assert cold["transactions"] == 0, cold


async def test_postgresql_connections_are_not_pinged_on_checkout(
    make_settings: SettingsFactory, backend: str
) -> None:
    # The pre-ping goes straight to the driver (BEGIN, an empty query, ROLLBACK), where
    # the statement counter above cannot see it: the pool's flag is checked instead.
    engine = create_engine(make_settings().database_url, pool_size=7)
    try:
        if backend == "postgres":
            assert engine.pool._pre_ping is False
            assert engine.pool.size() == 7
            assert engine.pool._max_overflow == 0
    finally:
        await engine.dispose()


async def test_session_list_and_export_are_read_only_and_still_work(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with running_app(quiet(make_settings)) as http:
        headers = bearer((await signup_login(http))["access_token"])
        with counting() as counts:
            sessions = await http.get("/v1/me/sessions", headers=headers)
            export = await http.get("/v1/me/export", headers=headers)
    assert sessions.status_code == 200, sessions.text
    assert len(sessions.json()["items"]) == 1
    assert export.status_code == 200, export.text
    assert export.json()["audit_events"], export.json()
    if backend == "postgres":
        assert counts["transactions"] == 0, counts


async def test_a_read_only_unit_of_work_refuses_writes(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    engine = create_engine(settings.database_url)
    try:
        read_sessions = read_session_factory(engine)
        if read_sessions is None:
            pytest.skip("SQLite uses its normal sessions for reads")
        uow = SqlUnitOfWork(read_sessions, read_sessions, read_only=True)
        async with uow:
            await uow.users.get(uuid.uuid4())  # a read is fine
            with pytest.raises(ReadOnlyViolation):
                await uow.users.update_name(uuid.uuid4(), "x", utcnow())
        async with uow:
            db = uow._db
            assert db is not None
            db.add(UserRow(id=uuid.uuid4(), email=f"{uuid.uuid4().hex}@example.com"))
            with pytest.raises(ReadOnlyViolation):
                await db.flush()
    finally:
        await engine.dispose()


async def _terminate_other_backends(url: str) -> int:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            result = await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return len(result.all())
    finally:
        await admin.dispose()


async def _fill_pool(http: httpx.AsyncClient, headers: dict[str, str], width: int) -> None:
    answers = await asyncio.gather(*(http.get("/v1/me", headers=headers) for _ in range(width)))
    assert all(answer.status_code == 200 for answer in answers)


@pytest.mark.parametrize("settle", [0.0, 0.3], ids=["at-once", "after-close-seen"])
async def test_terminated_connections_cost_no_failed_request(
    make_settings: SettingsFactory, backend: str, private_database_url: str, settle: float
) -> None:
    if backend != "postgres":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    application: FastAPI = create_app(quiet(make_settings, database_url=private_database_url))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            token = await signup_login(http)
            headers = bearer(token["access_token"])
            await _fill_pool(http, headers, 8)
            assert await _terminate_other_backends(private_database_url) >= 1
            # "at-once": the next request may check out a connection whose close asyncpg
            # has not seen yet (retried once on a fresh one); "after-close-seen": the
            # checkout check drops the dead connections without a round trip.
            await asyncio.sleep(settle)
            assert (await http.get("/v1/me", headers=headers)).status_code == 200
            answers = await asyncio.gather(*(http.get("/v1/me", headers=headers) for _ in range(8)))
            assert [answer.status_code for answer in answers] == [200] * 8
            # A write use case and a login on the new connections.
            patched = await http.patch("/v1/me", headers=headers, json={"name": "Ada"})
            assert patched.status_code == 200, patched.text
            login = await http.post(
                "/v1/auth/login", json={"email": token["email"], "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            # Terminated again while idle: the write path's first statement recovers too.
            assert await _terminate_other_backends(private_database_url) >= 1
            await asyncio.sleep(settle)
            patched = await http.patch("/v1/me", headers=headers, json={"name": "Grace"})
            assert patched.status_code == 200, patched.text
            assert (await http.get("/v1/me", headers=headers)).json()["name"] == "Grace"
            # And a login first: its lookup runs outside any unit of work (db/sign_in.py).
            assert await _terminate_other_backends(private_database_url) >= 1
            await asyncio.sleep(settle)
            login = await http.post(
                "/v1/auth/login", json={"email": token["email"], "password": PASSWORD}
            )
            assert login.status_code == 200, login.text


async def test_a_failure_after_the_first_statement_is_not_retried(
    make_settings: SettingsFactory, backend: str, private_database_url: str
) -> None:
    """Only a unit of work's first statement is retried: later ones fail loudly."""
    if backend != "postgres":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    settings = make_settings(database_url=private_database_url)
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as db:
            await db.execute(select(UserRow.id).limit(1))  # the transaction is open
            await _terminate_other_backends(private_database_url)
            with pytest.raises(DBAPIError) as raised:
                await db.execute(update(UserRow).where(UserRow.id == uuid.uuid4()).values(name="x"))
            assert raised.value.connection_invalidated
    finally:
        await engine.dispose()


def _client_credentials_client() -> dict[str, Any]:
    return {
        "client_name": "Round trips",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "scope": "me:read",
        "token_endpoint_auth_method": "client_secret_basic",
    }


async def test_client_credentials_costs_no_statement_on_a_warm_process(
    make_settings: SettingsFactory, backend: str
) -> None:
    settings = quiet(make_settings)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await register(application, http, **_client_credentials_client())
            auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
            form = {"grant_type": "client_credentials"}
            with counting() as first:
                assert (await http.post("/oauth2/token", data=form, auth=auth)).status_code == 200
            with counting() as counts:
                for _ in range(3):
                    answer = await http.post("/oauth2/token", data=form, auth=auth)
                    assert answer.status_code == 200, answer.text
            await application.state.services.audit_batch.flush()
            events = await _token_issued(settings.database_url, created["client_id"])
    # The first grant reads the client (one pure read: no transaction on PostgreSQL).
    assert first["statements"] == 1, first
    if backend == "postgres":
        assert first["transactions"] == 0, first
    # Warm: the client from the cache, the audit row queued for the background task.
    assert counts["statements"] == 0, counts
    assert counts["transactions"] == 0, counts
    # Every grant's row reached the audit log (after a flush, not in the request).
    assert len(events) == 4, events


async def _token_issued(database_url: str, client_id: str) -> list[AuditEvent]:
    engine = create_engine(database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            rows = await uow.audit.search(
                AuditFilter(type="oauth.token_issued"), limit=100, before_id=None
            )
    finally:
        await engine.dispose()
    return [row for row in rows if row.data.get("client_id") == client_id]


async def test_introspecting_a_jwt_costs_no_statement_on_a_warm_process(
    make_settings: SettingsFactory, backend: str
) -> None:
    application = create_app(quiet(make_settings))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await register(application, http, **_client_credentials_client())
            auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
            issued = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
            )
            machine = issued.json()["access_token"]
            first_party = (await signup_login(http))["access_token"]
            await application.state.services.audit_batch.flush()
            with counting() as counts:
                for token in (machine, first_party) * 2:
                    answer = await http.post("/oauth2/introspect", data={"token": token}, auth=auth)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["active"] is True, answer.text
    # Signature, claims and the deny-list; the caller's record from the cache; a
    # first-party token's scopes are its own, a client_credentials token's client is the
    # caller: nothing only the database knows.
    assert counts["statements"] == 0, counts
    assert counts["transactions"] == 0, counts


async def test_refresh_rotation_costs_two_statements(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with running_app(quiet(make_settings)) as http:
        token = (await signup_login(http))["refresh_token"]
        with counting() as counts:
            for _ in range(3):
                answer = await http.post("/v1/auth/refresh", json={"refresh_token": token})
                assert answer.status_code == 200, answer.text
                token = answer.json()["refresh_token"]
    # One read (token, session, user and roles joined) and, on PostgreSQL, one write
    # (claim, successor, session touch in one statement); SQLite writes in three.
    assert counts["statements"] == 3 * (2 if backend == "postgres" else 4), counts
    assert counts["transactions"] == 3, counts


async def test_login_reads_the_user_without_a_transaction(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with running_app(quiet(make_settings)) as http:
        email = (await signup_login(http))["email"]
        with counting() as counts:
            for _ in range(3):
                answer = await http.post(
                    "/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
                assert answer.status_code == 200, answer.text
    # The user lookup, which also counts the account's second factors (issue 15 asked
    # them in a SELECT of its own after the right password); then the session, its
    # refresh token and the audit row: one statement on PostgreSQL (data-modifying CTEs),
    # three on SQLite.
    assert counts["statements"] == 3 * (2 if backend == "postgres" else 4), counts
    if backend == "postgres":
        # The read and the write each run on an autocommit connection of their own
        # (db/sign_in.py): neither sends BEGIN or COMMIT (the login's four round trips of
        # a transaction are one).
        assert counts["transactions"] == 0, counts
