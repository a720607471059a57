"""client_credentials' ``oauth.token_issued`` rows go through the audit batch.

They reach the hash chain after a flush and after a graceful shutdown (never lost then);
the flush rules that bound a kill -9 loss are proven with a unit of work that records what
it was given: the queue empties every interval, at ``batch`` rows without waiting for the
interval, keeps its rows (in order) when the database fails, and refuses past capacity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from conftest import SettingsFactory
from helpers import lifespan
from keyturn.app import create_app
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import AuditFilter, AuditRecord, utcnow
from keyturn.errors import DatabaseUnavailable, ServiceUnavailable
from keyturn.services import audit_batch
from keyturn.services.audit_batch import AuditBatch
from oauth_helpers import register
from sql_spy import queries, statements_run_here

pytestmark = pytest.mark.anyio

MACHINE = {
    "client_name": "Batch",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "redirect_uris": [],
    "scope": "me:read",
    "token_endpoint_auth_method": "client_secret_basic",
}
POLLS = 1000  # 10 ms steps: bounded polling, never a time assertion


async def _grants(http: httpx.AsyncClient, created: dict[str, Any], count: int) -> None:
    auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
    for _ in range(count):
        answer = await http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
        )
        assert answer.status_code == 200, answer.text


async def _rows(database_url: str, client_id: str) -> list[int]:
    """Ids of the client's token_issued rows, and the chain's verdict, read afresh."""
    engine = create_engine(database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            events = await uow.audit.search(
                AuditFilter(type="oauth.token_issued"), limit=500, before_id=None
            )
    finally:
        await engine.dispose()
    return [event.id for event in events if event.data.get("client_id") == client_id]


async def test_batched_rows_are_sealed_into_the_chain_after_a_flush(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(audit_seal_seconds=3600)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await register(application, http, **MACHINE)
            await _grants(http, created, 5)
            services = application.state.services
            await services.audit_batch.flush()
            assert len(services.audit_batch) == 0
            assert len(await _rows(settings.database_url, created["client_id"])) == 5
            await services.audit_chain.seal(wait=True)
            report = await services.audit_chain.verify(batch_size=100)
    assert report.intact, report
    assert report.unsealed == 0, report


async def test_a_graceful_shutdown_flushes_what_the_last_requests_queued(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No periodic flush: the rows are still queued when the app stops.
    monkeypatch.setattr(audit_batch, "INTERVAL_SECONDS", 3600.0)
    settings = make_settings(audit_seal_seconds=3600)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await register(application, http, **MACHINE)
            await _grants(http, created, 3)
            assert len(application.state.services.audit_batch) == 3
            assert await _rows(settings.database_url, created["client_id"]) == []
    # Whatever was still queued at stop went in before the engine closed.
    assert len(await _rows(settings.database_url, created["client_id"])) == 3


async def test_every_batch_size_is_written_by_the_same_statement(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One INSERT text whatever the batch's size: a multi-row INSERT per size made each
    size another prepared statement in the driver's caches of every pooled connection,
    and a worker grew about 5 MB per 10,000 grants."""
    monkeypatch.setattr(audit_batch, "INTERVAL_SECONDS", 3600.0)  # only this test flushes
    application = create_app(make_settings(audit_seal_seconds=3600))
    texts: list[list[str]] = []
    async with lifespan(application):
        batch = application.state.services.audit_batch
        for size in (2, 7, 1):
            _queue(batch, *range(size))
            with statements_run_here() as statements:
                assert await batch.flush() == size
            texts.append(
                [s for s in queries(statements) if s.lstrip().upper().startswith("INSERT")]
            )
    assert [len(inserts) for inserts in texts] == [1, 1, 1], texts
    assert len({inserts[0] for inserts in texts}) == 1, texts


# -- the flush rules, on a recording unit of work --------------------------------------------


class RecordingAudit:
    def __init__(self, sink: list[list[str]], fail: Callable[[], bool]) -> None:
        self._sink = sink
        self._fail = fail
        self._pending: list[str] = []

    async def record_many(self, events: Sequence[AuditRecord]) -> None:
        self._pending.extend(str(event.data["n"]) for event in events)

    def commit(self) -> None:
        if self._fail():
            raise DatabaseUnavailable("down")
        self._sink.append(self._pending)


class RecordingUnitOfWork:
    def __init__(self, sink: list[list[str]], fail: Callable[[], bool]) -> None:
        self.audit = RecordingAudit(sink, fail)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def commit(self) -> None:
        self.audit.commit()


def _batch(
    sink: list[list[str]], fail: Callable[[], bool] = lambda: False, **kw: Any
) -> AuditBatch:
    return AuditBatch(uow_factory=lambda: RecordingUnitOfWork(sink, fail), **kw)  # type: ignore[arg-type,return-value]


def _queue(batch: AuditBatch, *numbers: int) -> None:
    for n in numbers:
        batch.record("oauth.token_issued", now=utcnow(), data={"n": n})


async def _until(condition: Callable[[], bool]) -> bool:
    for _ in range(POLLS):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_the_queue_is_emptied_every_interval() -> None:
    # What a kill -9 can lose is what was queued since the last flush: one interval.
    sink: list[list[str]] = []
    batch = _batch(sink, interval=0.01, batch=1000)
    stop = asyncio.Event()
    task = batch.start(stop)
    _queue(batch, 1, 2)
    assert await _until(lambda: len(batch) == 0)
    _queue(batch, 3)
    assert await _until(lambda: len(batch) == 0)
    stop.set()
    await task
    assert sink == [["1", "2"], ["3"]]


async def test_a_full_batch_flushes_without_waiting_for_the_interval() -> None:
    sink: list[list[str]] = []
    batch = _batch(sink, interval=3600, batch=3)
    stop = asyncio.Event()
    task = batch.start(stop)
    _queue(batch, 1, 2)
    await asyncio.sleep(0.05)
    assert sink == []  # below the batch size, the hour-long interval holds
    _queue(batch, 3)
    assert await _until(lambda: sink == [["1", "2", "3"]])
    stop.set()
    await task


async def test_rows_survive_a_failed_flush_in_order_and_stop_flushes_them() -> None:
    sink: list[list[str]] = []
    down = [True]
    batch = _batch(sink, lambda: down[0], interval=3600)
    _queue(batch, 1, 2)
    with pytest.raises(DatabaseUnavailable):
        await batch.flush()
    _queue(batch, 3)
    assert len(batch) == 3
    down[0] = False
    stop = asyncio.Event()
    task = batch.start(stop)
    stop.set()
    await task  # the final flush at stop
    assert sink == [["1", "2", "3"]]


async def test_a_full_queue_refuses_the_grant() -> None:
    batch = _batch([], interval=3600, capacity=2)
    _queue(batch, 1, 2)
    with pytest.raises(ServiceUnavailable):
        _queue(batch, 3)
    assert len(batch) == 2
