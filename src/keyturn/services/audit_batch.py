"""Audit rows written after the answer, in batches: ``oauth.token_issued`` of client_credentials.

A client_credentials grant changes nothing in the database: its only write was its audit
row, one INSERT and one COMMIT per token. Here the request appends the row to an
in-process queue and a background task inserts the queue every ``interval`` seconds
(0.1 s), or as soon as ``batch`` rows (256) wait, in one transaction of plain unsealed
rows; the sealer (``services/admin/audit_chain.py``) chains them like any other.

Durability, stated (docs/technical/2026-11-26_backend_security-implementation.md, "The
audit hash chain"): a graceful shutdown (SIGTERM) flushes the queue before the engine
closes; a process killed with SIGKILL (or a host that dies) loses the rows queued since
the last flush: at most one interval of ``oauth.token_issued`` rows of client_credentials
grants, 0.1 s worth. That is acceptable for this event only: it records a success that
changed no state (no session, no grant, nothing to revoke), the token itself is
self-contained and short-lived, and the client's own authentication is what an
investigation needs (its failures, ``client.authentication_failed``, stay synchronous,
as does every event that records a change). While the database is down the rows stay
queued and are retried; past ``capacity`` queued rows the grant is refused (503), so no
token is issued whose audit row could not even be queued.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import structlog

from keyturn.domain import AuditRecord
from keyturn.errors import DatabaseUnavailable, ServiceUnavailable
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["FLUSH_TASK_NAME", "AuditBatch"]

log = structlog.get_logger(__name__)

# The background task's name: statement-count tests tell its statements from a request's.
FLUSH_TASK_NAME = "keyturn-audit-batch"
INTERVAL_SECONDS = 0.1
BATCH_ROWS = 256
# About 20 s of a saturated worker's grants: a longer database outage refuses grants.
CAPACITY_ROWS = 10_000


class AuditBatch:
    """Queues audit rows in the request and inserts them from a background task.

    Args:
        uow_factory: Units of work for the inserts.
        interval: Seconds between flushes (the kill -9 loss bound); ``INTERVAL_SECONDS``
            when None (read at construction, so a test can hold rows until shutdown).
        batch: Queued rows that trigger a flush before the interval ends.
        capacity: Queued rows beyond which ``record`` refuses (database down).
    """

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        interval: float | None = None,
        batch: int = BATCH_ROWS,
        capacity: int = CAPACITY_ROWS,
    ) -> None:
        self._uow_factory = uow_factory
        self._interval = INTERVAL_SECONDS if interval is None else interval
        self._batch = batch
        self._capacity = capacity
        self._queue: list[AuditRecord] = []
        self._wake = asyncio.Event()
        # One flush at a time (the loop's and the final one at shutdown).
        self._flushing = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._queue)

    def record(
        self,
        event_type: str,
        *,
        now: datetime,
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        ip: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Queues one row (``AuditRepository.record``'s arguments); no I/O.

        Raises:
            ServiceUnavailable: The queue is full (the database has been down a while):
                the caller issues nothing it could not audit.
        """
        if len(self._queue) >= self._capacity:
            raise ServiceUnavailable("The audit log is not accepting events; try again.")
        self._queue.append(AuditRecord(event_type, now, user_id, session_id, ip, dict(data or {})))
        if len(self._queue) >= self._batch:
            self._wake.set()

    async def flush(self) -> int:
        """Inserts every queued row in one transaction; returns how many.

        On failure the rows go back to the head of the queue (order kept) for the next
        flush, and the error propagates.
        """
        async with self._flushing:
            rows, self._queue = self._queue, []
            if not rows:
                return 0
            try:
                async with self._uow_factory() as uow:
                    await uow.audit.record_many(rows)
                    await uow.commit()
            except BaseException:
                self._queue[:0] = rows
                raise
            return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Flushes every ``interval`` (or at ``batch`` rows) until ``stop``, then once more."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    (stopping, waking), timeout=self._interval, return_when="FIRST_COMPLETED"
                )
                waking.cancel()
                self._wake.clear()
                await self._flush_logged()
        finally:
            stopping.cancel()
        # Shutdown: what the last requests queued goes in before the engine closes.
        await self._flush_logged()
        if self._queue:
            # The database is down at shutdown: these rows are lost; say how many.
            log.error("audit_batch_rows_lost", rows=len(self._queue))

    def start(self, stop: asyncio.Event) -> asyncio.Task[None]:
        """Runs the loop as the task named ``FLUSH_TASK_NAME`` until ``stop``."""
        return asyncio.create_task(self.run(stop), name=FLUSH_TASK_NAME)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except DatabaseUnavailable:
            pass  # the db layer logs the outage; the rows wait for the next round
        except Exception:
            log.exception("audit_batch_flush_failed", queued=len(self._queue))
