"""The one test matrix (DESIGN.md section 8).

Every test that takes ``settings``/``client`` runs on the embedded default (SQLite +
in-process stores) and, when ``KEYTURN_TEST_DATABASE_URL`` / ``KEYTURN_TEST_REDIS_URL`` are
set, again on PostgreSQL + Redis. Each run creates and drops its own PostgreSQL database
and uses its own Redis key prefix (never FLUSHDB).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import TEST_SECRET, lifespan
from keyturn.app import create_app
from keyturn.config import Settings, load_settings
from keyturn.db.migrate import upgrade
from shared_routes import share_route_state_across_apps
from smtp_server import SmtpServer

T = TypeVar("T")

share_route_state_across_apps()

PG_URL = os.environ.get("KEYTURN_TEST_DATABASE_URL") or None
REDIS_URL = os.environ.get("KEYTURN_TEST_REDIS_URL") or None
# .ci/run's second run sets this: its first run already covered the embedded backend.
SKIP_EMBEDDED = os.environ.get("KEYTURN_TEST_SKIP_EMBEDDED") == "1"
BACKENDS = [*([] if SKIP_EMBEDDED else ["embedded"]), *(["postgres"] if PG_URL else [])]


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"keyturn backends: {', '.join(BACKENDS) or 'none'}"]
    if SKIP_EMBEDDED:
        lines.append(
            "SKIPPED: embedded backend variants and tests that need no server "
            "(KEYTURN_TEST_SKIP_EMBEDDED=1; the first CI run ran them)"
        )
    if not PG_URL:
        lines.append(
            "SKIPPED: PostgreSQL backend (KEYTURN_TEST_DATABASE_URL unset; .ci/run sets it)"
        )
    if not REDIS_URL:
        lines.append("SKIPPED: Redis backend (KEYTURN_TEST_REDIS_URL unset)")
    return lines


# What makes a test depend on the servers: the backend matrix, a server marker, or the
# store contract suites' Redis fixture.
SERVER_MARKERS = ("postgres", "redis")
SERVER_FIXTURES = ("backend", "redis_url")


def needs_servers(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return any(name in fixtures for name in SERVER_FIXTURES) or any(
        item.get_closest_marker(marker) for marker in SERVER_MARKERS
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """.ci/run's second run (KEYTURN_TEST_SKIP_EMBEDDED=1) keeps only the tests that touch
    PostgreSQL or Redis: the first run already ran every other test, whose outcome these
    servers cannot change, and the coverage of both runs is combined."""
    if not SKIP_EMBEDDED:
        return
    kept = [item for item in items if needs_servers(item)]
    dropped = [item for item in items if not needs_servers(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to completion on its own loop in a worker thread.

    Session fixtures may first be requested from inside an async test (through
    ``getfixturevalue``), where ``asyncio.run`` in the same thread is not allowed.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'keyturn.db'}"
    run_blocking(upgrade(url))
    return url


async def _admin_sql(statement: str) -> None:
    assert PG_URL is not None
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("KEYTURN_TEST_DATABASE_URL is not set")
    name = f"keyturn_test_{uuid.uuid4().hex[:12]}"
    run_blocking(_admin_sql(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        run_blocking(upgrade(url))
        yield url
    finally:
        run_blocking(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A new, EMPTY PostgreSQL database for one test (dropped after it): for tests whose
    subject builds the schema itself (an installed wheel's or PgBouncer's `keyturn migrate`)."""
    if not PG_URL:
        pytest.skip("KEYTURN_TEST_DATABASE_URL is not set")
    name = f"keyturn_empty_{uuid.uuid4().hex[:12]}"
    run_blocking(_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        run_blocking(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def private_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this backend, migrated to head, for one test alone.

    For tests that rotate keys, tamper with the audit chain or drain the whole outbox:
    the shared per-run database must not see that.
    """
    if backend == "embedded":
        url = f"sqlite+aiosqlite:///{tmp_path / 'private.db'}"
        await upgrade(url)
        yield url
        return
    assert PG_URL is not None
    name = f"keyturn_private_{uuid.uuid4().hex[:12]}"
    await _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        await upgrade(url)
        yield url
    finally:
        await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"keyturn-test-{uuid.uuid4().hex}:"
    yield prefix
    if REDIS_URL:
        run_blocking(_delete_prefix(prefix))


async def _delete_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL or "")
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpServer]:
    """One real SMTP server (aiosmtpd) for the run; tests tell mails apart by recipient."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_prefix: str,
    smtp: SmtpServer,
) -> SettingsFactory:
    """Settings for this backend: cheap hashing, fixed secret, overrides on top."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "dev",
            "data_dir": tmp_path,
            "secret_key": [TEST_SECRET],
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "hash_workers": 2,
            "redis_prefix": redis_prefix,
            "smtp_url": smtp.url,
            "outbox_poll_seconds": 0.05,
        }
        if backend == "postgres":
            values["database_url"] = request.getfixturevalue("postgres_url")
            values["redis_url"] = REDIS_URL
        else:
            values["database_url"] = request.getfixturevalue("sqlite_url")
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with lifespan(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
