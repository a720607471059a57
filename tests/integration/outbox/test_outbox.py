"""The email outbox survives SMTP outages and worker crashes (DESIGN.md section 6).

Mail is written in the signup's transaction and delivered at least once by a worker:
nothing is lost while SMTP is down, a crash between send and mark sends at worst twice
with the same Message-ID, concurrent workers never both send one message, failures retry
on the 5 s doubling schedule and dead-letter after 24 hours (or at once for a permanent
refusal), and the stored payload is sealed.

Every test gets a database of its own: the outbox is a queue that any worker drains, so
a shared database would let these workers deliver (or dead-letter) other tests' mail.
Time moves with time-machine (the worker reads ``keyturn.domain.utcnow``); waits are
bounded polls, never timing assertions.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from helpers import PASSWORD, TEST_SECRET, mails_to, new_email, running_app
from keyturn.cli.main import app as cli_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.models import OutboxMessageRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain_mail import MailMessage
from keyturn.infra.mail import SmtpMailer
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.outbox import Mailer, OutboxWorker, retry_delay
from keyturn.services.ports import UnitOfWork
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio

SettingsFactory = Callable[..., Settings]
# Bounds for polling, not expectations.
WAIT = 15.0
POLL = 0.02
# A few inline-worker rounds (outbox_poll_seconds=0.05) for a duplicate to show up.
SETTLE = 0.3


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def outbox_db(private_database_url: str) -> str:
    return private_database_url


@pytest.fixture
async def engine(outbox_db: str) -> AsyncIterator[AsyncEngine]:
    """The test's own connection to ``outbox_db`` (for workers and row inspection)."""
    created = create_engine(outbox_db)
    yield created
    await created.dispose()


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    """A mail server of this test's own, not yet started (SMTP is down until ``start``)."""
    server = SmtpServer()
    yield server
    server.stop()


async def _rows(engine: AsyncEngine) -> list[OutboxMessageRow]:
    async with session_factory(engine)() as db:
        rows = await db.scalars(select(OutboxMessageRow).order_by(OutboxMessageRow.created_at))
        return list(rows)


async def _only_row(engine: AsyncEngine) -> OutboxMessageRow:
    (row,) = await _rows(engine)
    return row


async def _wait_rows(
    engine: AsyncEngine, condition: Callable[[list[OutboxMessageRow]], bool], what: str
) -> list[OutboxMessageRow]:
    """Polls the outbox table until ``condition`` holds (bounded)."""
    for _ in range(int(WAIT / POLL)):
        if condition(await _rows(engine)):
            break
        await asyncio.sleep(POLL)
    rows = await _rows(engine)
    assert condition(rows), f"{what}: {[(r.status, r.attempts, r.last_error) for r in rows]}"
    return rows


def _worker(
    engine: AsyncEngine,
    settings: Settings,
    mailer: Mailer,
    *,
    owner: str | None = None,
    lease_seconds: int = 60,
) -> OutboxWorker:
    sessions = session_factory(engine)

    def uow_factory() -> UnitOfWork:
        return SqlUnitOfWork(sessions)

    return OutboxWorker(
        uow_factory=uow_factory,
        mailer=mailer,
        aead=Aead(KeyRing.from_strings(settings.secret_key)),
        lease_seconds=lease_seconds,
        owner=owner,
    )


def _mailer(server: SmtpServer, settings: Settings) -> SmtpMailer:
    return SmtpMailer.from_url(server.url, sender=settings.mail_from, timeout=5.0)


async def _signup(client: httpx.AsyncClient, email: str) -> None:
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 202, answer.text


async def _queue_signups(settings: Settings, count: int) -> list[str]:
    """Signs ``count`` users up on an app without an inline worker; returns the addresses."""
    assert settings.outbox_worker == "off"
    emails = [new_email() for _ in range(count)]
    async with running_app(settings) as client:
        for email in emails:
            await _signup(client, email)
    return emails


def _per_message_id(server: SmtpServer) -> Counter[str]:
    return Counter(str(message["Message-ID"]) for message in server.messages)


def _per_recipient(server: SmtpServer, emails: Sequence[str]) -> dict[str, int]:
    received = Counter(str(message["To"]) for message in server.messages)
    return {email: received[email] for email in emails}


def _start() -> datetime:
    # Whole seconds: the schedule is compared exactly after a database round trip.
    return datetime.now(UTC).replace(microsecond=0)


# --- 1. SMTP down: nothing is lost ----------------------------------------------------


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-restart"])
async def test_mail_queued_while_smtp_is_down_is_delivered_once_when_it_returns(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
    restart: bool,
) -> None:
    settings = make_settings(
        database_url=outbox_db, smtp_url=smtp_server.url, outbox_poll_seconds=0.05
    )
    emails = [new_email() for _ in range(5)]
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        async with running_app(settings) as client:
            for email in emails:
                await _signup(client, email)  # SMTP down never fails the request
            rows = await _wait_rows(
                engine,
                lambda rows: (
                    len(rows) == 5 and all(r.status == "pending" and r.last_error for r in rows)
                ),
                "every mail tried once and queued for a retry",
            )
            counts = await _counts(engine)
            assert counts == {"pending": 5}
            for row in rows:
                # Frozen clock: exactly one attempt, the retry 5 s away.
                assert row.attempts == 1
                assert row.next_attempt_at == start + timedelta(seconds=retry_delay(1))
                assert row.next_attempt_at > start
                assert row.sent_at is None
                assert "SMTP delivery failed" in (row.last_error or "")
            assert smtp_server.messages == []
            if not restart:
                await _deliver_after_recovery(client, smtp_server, traveller, engine, emails)
        if restart:
            # The queue outlives the process: a new one delivers it.
            async with running_app(settings) as client:
                await _deliver_after_recovery(client, smtp_server, traveller, engine, emails)


async def _deliver_after_recovery(
    client: httpx.AsyncClient,
    server: SmtpServer,
    traveller: time_machine.Traveller,
    engine: AsyncEngine,
    emails: list[str],
) -> None:
    server.start()
    traveller.shift(timedelta(seconds=retry_delay(1) + 1))
    for email in emails:
        await mails_to(server, email, within=WAIT)
    rows = await _wait_rows(
        engine, lambda rows: all(r.status == "sent" for r in rows), "all mails marked sent"
    )
    await asyncio.sleep(SETTLE)  # a duplicate would have had several worker rounds to appear
    assert _per_recipient(server, emails) == dict.fromkeys(emails, 1)
    assert all(count == 1 for count in _per_message_id(server).values())
    assert {str(m["Message-ID"]) for m in server.messages} == {r.message_id for r in rows}
    assert all(r.attempts == 2 and r.last_error is None for r in rows)
    assert await _counts(engine) == {"sent": 5}


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with SqlUnitOfWork(session_factory(engine)) as uow:
        return await uow.outbox.counts()


# --- 2. A crash between send and mark -------------------------------------------------


class WorkerDied(BaseException):
    """The process died right after the send: no handler, no ``mark_sent`` runs."""


class CrashAfterSend:
    """Sends for real, then "dies" before the worker can mark the message sent."""

    def __init__(self, inner: SmtpMailer) -> None:
        self._inner = inner

    async def send(self, message: MailMessage) -> None:
        await self._inner.send(message)
        raise WorkerDied

    async def close(self) -> None:
        await self._inner.close()


async def test_a_crash_between_send_and_mark_resends_once_with_the_same_message_id(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    smtp_server.start()
    mailer = _mailer(smtp_server, settings)
    crashy = _worker(engine, settings, CrashAfterSend(mailer), lease_seconds=1, owner="crashy")
    patient = _worker(engine, settings, mailer, lease_seconds=60, owner="patient")
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        (email,) = await _queue_signups(settings, 1)
        with pytest.raises(WorkerDied):
            await crashy.run_once()
        (first,) = smtp_server.messages
        row = await _only_row(engine)
        assert (row.status, row.lease_owner, row.attempts) == ("sending", "crashy", 1)
        assert row.lease_until == start + timedelta(seconds=1)

        # While the dead worker's lease holds, nobody else sends it (no double send).
        assert await patient.run_once() == 0
        traveller.shift(timedelta(seconds=1))  # lease_until == now: still held
        assert await patient.run_once() == 0
        assert len(smtp_server.messages) == 1
        assert (await _only_row(engine)).lease_owner == "crashy"

        traveller.shift(timedelta(seconds=1))  # the lease has expired
        assert await patient.run_once() == 1
    first_copy, second_copy = await mails_to(smtp_server, email, count=2, within=WAIT)
    assert first_copy is first
    assert str(second_copy["Message-ID"]) == str(first["Message-ID"])
    assert str(second_copy["Subject"]) == str(first["Subject"])
    assert len(smtp_server.messages) == 2
    row = await _only_row(engine)
    assert (row.status, row.attempts, row.lease_owner) == ("sent", 2, None)
    assert row.message_id == str(first["Message-ID"])
    # Sent is final: no worker sends it a third time.
    assert await patient.run_once() == 0
    assert len(smtp_server.messages) == 2


class Failing:
    """A mailer whose driver breaks with an unexpected (non-delivery) exception."""

    async def send(self, message: MailMessage) -> None:
        raise RuntimeError("driver bug")

    async def close(self) -> None:
        pass


async def test_an_unexpected_mailer_error_leaves_the_message_for_the_lease_to_recover(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    smtp_server.start()
    broken = _worker(engine, settings, Failing(), lease_seconds=1, owner="broken")
    healthy = _worker(engine, settings, _mailer(smtp_server, settings), owner="healthy")
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        (email,) = await _queue_signups(settings, 1)
        with pytest.raises(RuntimeError):
            await broken.run_once()
        assert (await _only_row(engine)).status == "sending"
        assert await healthy.run_once() == 0
        traveller.shift(timedelta(seconds=2))
        assert await healthy.run_once() == 1
    await mails_to(smtp_server, email, within=WAIT)
    assert (await _only_row(engine)).status == "sent"


# --- 3. Concurrent workers --------------------------------------------------------------


async def test_concurrent_workers_deliver_every_message_exactly_once(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    smtp_server.start()
    emails = await _queue_signups(settings, 10)
    mailer = _mailer(smtp_server, settings)
    workers = [_worker(engine, settings, mailer, owner=f"worker-{n}") for n in range(3)]
    sent = await asyncio.gather(*(worker.run_once() for worker in workers))
    assert sum(sent) == 10
    rows = await _rows(engine)
    assert [r.status for r in rows] == ["sent"] * 10
    assert all(r.attempts == 1 for r in rows)
    assert _per_message_id(smtp_server) == Counter({r.message_id: 1 for r in rows})
    assert _per_recipient(smtp_server, emails) == dict.fromkeys(emails, 1)
    # Another round finds nothing left.
    assert sum(await asyncio.gather(*(worker.run_once() for worker in workers))) == 0


async def test_the_default_worker_owner_fits_the_lease_column(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Kubernetes pod's hostname may be 63 characters; the lease must still be taken."""
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    smtp_server.start()
    (email,) = await _queue_signups(settings, 1)
    monkeypatch.setattr(socket, "gethostname", lambda: "keyturn-worker-" + "x" * 48)
    worker = _worker(engine, settings, _mailer(smtp_server, settings))
    assert await worker.run_once() == 1
    await mails_to(smtp_server, email, within=WAIT)


# --- 4. Retry schedule and dead letters -----------------------------------------------


async def test_failures_follow_the_schedule_then_dead_letter_after_24_hours(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    worker = _worker(engine, settings, _mailer(smtp_server, settings), owner="scheduler")
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        (email,) = await _queue_signups(settings, 1)
        created = (await _only_row(engine)).created_at
        assert created == start
        assert await worker.run_once() == 0  # SMTP is down
        now = start
        for attempt, delay in enumerate([5, 10, 20, 40, 80, 160, 300, 300], start=1):
            row = await _only_row(engine)
            assert (row.status, row.attempts) == ("pending", attempt)
            assert row.next_attempt_at == now + timedelta(seconds=delay)
            assert row.last_error
            assert "SMTP delivery failed" in row.last_error
            traveller.move_to(row.next_attempt_at - timedelta(seconds=1))
            assert await worker.run_once() == 0
            assert (await _only_row(engine)).attempts == attempt  # not due yet: not tried
            traveller.move_to(row.next_attempt_at)
            now = row.next_attempt_at
            assert await worker.run_once() == 0

        # Just under 24 hours old: still retried.
        almost = created + timedelta(hours=24) - timedelta(seconds=1)
        traveller.move_to(almost)
        attempts = (await _only_row(engine)).attempts
        await worker.run_once()
        row = await _only_row(engine)
        assert (row.status, row.attempts) == ("pending", attempts + 1)
        assert row.next_attempt_at == almost + timedelta(seconds=300)

        # The next failure, past 24 hours, is the last.
        traveller.move_to(row.next_attempt_at)
        await worker.run_once()
        dead = await _only_row(engine)
        assert (dead.status, dead.attempts) == ("dead", attempts + 2)
        assert dead.last_error
        assert "SMTP delivery failed" in dead.last_error
        assert dead.lease_owner is None

        # Never retried again, even once SMTP is back and time moves on.
        smtp_server.start()
        traveller.shift(timedelta(days=7))
        assert await worker.run_once() == 0
        assert (await _only_row(engine)).attempts == dead.attempts
        assert smtp_server.messages == []
        assert await _counts(engine) == {"dead": 1}

    status = await _outbox_status(settings, tmp_path)
    assert re.search(r"^dead\s+1$", status, re.MULTILINE), status
    assert re.search(r"^pending\s+0$", status, re.MULTILINE), status
    assert f"dead {dead.message_id} kind={dead.kind} attempts={dead.attempts}" in status
    assert email not in status  # the listing names the message, never the recipient


async def _outbox_status(settings: Settings, tmp_path: Path) -> str:
    env = {
        "KEYTURN_DATABASE_URL": settings.database_url,
        "KEYTURN_SECRET_KEY": TEST_SECRET,
        "KEYTURN_DATA_DIR": str(tmp_path / "cli"),
    }

    # The command runs its own event loop (asyncio.run): off this one, in a thread.
    def invoke() -> str:
        result = CliRunner().invoke(cli_app, ["outbox", "status"], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    return await anyio.to_thread.run_sync(invoke)


@pytest.mark.parametrize(
    ("reply", "status"),
    [("550 5.1.1 No such user", "dead"), ("450 4.2.1 Mailbox busy, try later", "pending")],
    ids=["permanent-550", "temporary-450"],
)
async def test_a_refused_recipient_dead_letters_only_when_permanent(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    reply: str,
    status: str,
) -> None:
    email = new_email()
    server = SmtpServer(rcpt_replies={email: reply})
    server.start()
    try:
        settings = make_settings(database_url=outbox_db, smtp_url=server.url, outbox_worker="off")
        worker = _worker(engine, settings, _mailer(server, settings), owner="refused")
        with time_machine.travel(_start(), tick=False) as traveller:
            async with running_app(settings) as client:
                await _signup(client, email)
            assert await worker.run_once() == 0
            row = await _only_row(engine)
            assert (row.status, row.attempts) == (status, 1)
            assert row.last_error
            assert reply[:3] in row.last_error
            traveller.shift(timedelta(seconds=retry_delay(1)))
            await worker.run_once()
        # A dead letter is never tried again; a temporary refusal is.
        assert (await _only_row(engine)).attempts == (1 if status == "dead" else 2)
        assert server.messages == []
    finally:
        server.stop()


# --- 5. Sealed at rest -----------------------------------------------------------------


async def test_the_stored_payload_reveals_neither_recipient_nor_token_nor_subject(
    make_settings: SettingsFactory,
    outbox_db: str,
    engine: AsyncEngine,
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database_url=outbox_db, smtp_url=smtp_server.url, outbox_worker="off")
    smtp_server.start()
    (email,) = await _queue_signups(settings, 1)
    queued = await _only_row(engine)
    payload = bytes(queued.payload)
    assert await _worker(engine, settings, _mailer(smtp_server, settings)).run_once() == 1
    (mail,) = await mails_to(smtp_server, email, within=WAIT)
    token = extract_token(mail)
    subject = str(mail["Subject"])

    # What sat in the table while the mail waited: none of it readable.
    for secret in (email, email.split("@")[0], token, subject):
        assert secret.encode() not in payload, secret
    assert email.encode("utf-16-le") not in payload
    # Positive control: this row is that mail, sealed under the key ring and its Message-ID.
    clear = MailMessage.from_json(
        Aead(KeyRing.from_strings(settings.secret_key)).decrypt(
            payload, aad=queued.message_id.encode()
        )
    )
    assert (clear.to, clear.subject, clear.message_id) == (email, subject, str(mail["Message-ID"]))
    assert token in clear.text
    # Once delivered, even the sealed body is dropped.
    assert (await _only_row(engine)).payload == b""
