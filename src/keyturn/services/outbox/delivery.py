"""The email outbox (DESIGN.md section 6): written with the change, delivered at least once.

A worker leases, sends with the stored Message-ID and marks each message; it also resolves
the queued account requests. See docs/technical/2026-11-26_backend_email-outbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from keyturn.domain import OutboxEntry, utcnow
from keyturn.domain_mail import MailMessage, new_message_id
from keyturn.errors import DatabaseUnavailable, MailDeliveryError
from keyturn.observability.metrics import OUTBOX_DELIVERIES
from keyturn.security.aead import Aead, DecryptionError
from keyturn.services.outbox.ports import Mailer, MailRenderer
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 300
DEAD_AFTER = timedelta(hours=24)
# The outbox kind of a deferred account request (not a mail).
REQUEST_KIND = "account_request"


class RequestResolver(Protocol):
    async def resolve(self, uow: UnitOfWork, request: dict[str, str]) -> None:
        """Does a queued request's account-dependent work in the worker's transaction."""


def retry_delay(attempts: int) -> int:
    """5 s after the first failure, doubling, capped at 5 minutes."""
    delay: int = FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return min(delay, MAX_RETRY_SECONDS)


class MailOutbox:
    """Renders a mail and queues it in the caller's unit of work (sealed at rest)."""

    def __init__(self, *, templates: MailRenderer, aead: Aead, message_id_domain: str) -> None:
        self._templates = templates
        self._aead = aead
        self._domain = message_id_domain
        self._wake = asyncio.Event()

    async def enqueue(self, uow: UnitOfWork, kind: str, *, to: str, **context: str) -> None:
        message = self._templates.render(
            kind, to=to, message_id=new_message_id(self._domain), **context
        )
        # The body holds links with live tokens: only the sealed form is stored.
        payload = self._aead.encrypt(message.to_json(), aad=message.message_id.encode())
        await uow.outbox.add(
            message_id=message.message_id, kind=kind, payload=payload, now=utcnow()
        )

    async def enqueue_request(self, uow: UnitOfWork, **request: str) -> None:
        """Queues an account request for the worker (sealed: it names an address)."""
        message_id = new_message_id(self._domain)
        payload = self._aead.encrypt(json.dumps(request).encode(), aad=message_id.encode())
        await uow.outbox.add(
            message_id=message_id, kind=REQUEST_KIND, payload=payload, now=utcnow()
        )

    def wake(self) -> None:
        """Tells an in-process worker that something was committed."""
        self._wake.set()

    async def wait(self, seconds: float) -> None:
        """Sleeps up to ``seconds``, or less when ``wake`` is called."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()


class OutboxWorker:
    """Delivers due messages; many workers may run against one database."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        mailer: Mailer,
        aead: Aead,
        lease_seconds: int = 60,
        batch: int = 20,
        owner: str | None = None,
        resolver: RequestResolver | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._resolver = resolver
        self._mailer = mailer
        self._aead = aead
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch
        # Fits the 64-character lease column whatever the host name's length.
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Delivers what is due now (until ``stop`` is set); returns how many were sent."""
        async with self._uow_factory() as uow:
            due = await uow.outbox.due(utcnow(), limit=self._batch)
        sent = 0
        for entry_id in due:
            if stop is not None and stop.is_set():
                break  # the rest stays queued for the next worker

            entry = await self._claim(entry_id)
            if entry is not None and await self._deliver(entry):
                sent += 1
        return sent

    async def run(self, outbox: MailOutbox, *, poll_seconds: float, stop: asyncio.Event) -> None:
        """Loops until ``stop`` is set; a failing round is logged, never fatal."""
        # Runs in its own task: this binding names every line it logs.
        structlog.contextvars.bind_contextvars(task="outbox-worker", worker=self.owner)
        while not stop.is_set():
            try:
                await self.run_once(stop)
            except DatabaseUnavailable:
                # The db layer logs an outage once per burst; a trace every poll would
                # flood the log while the database is down. The next round retries.
                log.debug("outbox_round_skipped", reason="database_unavailable")
            except Exception:  # the loop must survive a database hiccup
                log.exception("outbox_round_failed")
            await outbox.wait(poll_seconds)

    async def _claim(self, entry_id: uuid.UUID) -> OutboxEntry | None:
        now = utcnow()
        async with self._uow_factory() as uow:
            entry = await uow.outbox.claim(
                entry_id, owner=self.owner, now=now, lease_until=now + self._lease
            )
            await uow.commit()
        return entry

    async def _deliver(self, entry: OutboxEntry) -> bool:
        if entry.kind == REQUEST_KIND:
            return await self._resolve(entry)
        try:
            clear = self._aead.decrypt(entry.payload, aad=entry.message_id.encode())
            await self._mailer.send(MailMessage.from_json(clear))
        except MailDeliveryError as exc:
            await self._failed(entry, f"{type(exc).__name__}: {exc}", permanent=exc.permanent)
            return False
        except (DecryptionError, ValueError):
            # The key ring lost the key that sealed it, or the payload is not a message:
            # retrying cannot help.
            await self._failed(entry, "payload cannot be opened", permanent=True)
            return False
        async with self._uow_factory() as uow:
            await uow.outbox.mark_sent(entry.id, owner=self.owner, now=utcnow())
            await uow.commit()
        OUTBOX_DELIVERIES.labels("sent").inc()
        log.info("mail_sent", kind=entry.kind, message_id=entry.message_id, attempt=entry.attempts)
        return True

    async def _resolve(self, entry: OutboxEntry) -> bool:
        """Does a request's work and marks it done in one transaction (exactly once)."""
        if self._resolver is None:
            # A worker built without the account services leaves requests to one that has.
            await self._failed(entry, "no request resolver in this worker", permanent=False)
            return False
        try:
            clear = self._aead.decrypt(entry.payload, aad=entry.message_id.encode())
            request = json.loads(clear)
        except (DecryptionError, ValueError):
            await self._failed(entry, "payload cannot be opened", permanent=True)
            return False
        async with self._uow_factory() as uow:
            await self._resolver.resolve(uow, request)
            # Marked in the same transaction: if another worker took the expired lease
            # over, nothing here is committed and that worker does the work once.
            if not await uow.outbox.mark_sent(entry.id, owner=self.owner, now=utcnow()):
                return False
            await uow.commit()
        OUTBOX_DELIVERIES.labels("resolved").inc()
        log.info("request_resolved", message_id=entry.message_id, attempt=entry.attempts)
        return True

    async def _failed(self, entry: OutboxEntry, error: str, *, permanent: bool) -> None:
        now = utcnow()
        dead = permanent or now - entry.created_at >= DEAD_AFTER
        retry_at: datetime | None = (
            None if dead else now + timedelta(seconds=retry_delay(entry.attempts))
        )
        async with self._uow_factory() as uow:
            await uow.outbox.mark_failed(entry.id, owner=self.owner, error=error, retry_at=retry_at)
            await uow.commit()
        OUTBOX_DELIVERIES.labels("dead" if dead else "retry").inc()
        log.warning(
            "mail_failed",
            kind=entry.kind,
            message_id=entry.message_id,
            attempt=entry.attempts,
            dead=dead,
            error=error,
        )
