"""The audit hash chain: the background sealer, ``keyturn audit verify`` and ``prune``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from keyturn.domain import ChainReport, PruneResult, utcnow
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["SEAL_BATCH", "AuditChainService"]

# Rows chained per transaction: large enough to keep up with thousands of events a second,
# small enough that one sealing transaction stays short.
SEAL_BATCH = 500


class AuditChainService:
    """Seals, verifies and prunes the audit log (never an HTTP route's).

    Args:
        uow_factory: Units of work over the audit table.
        retention_days: ``KEYTURN_AUDIT_RETENTION_DAYS``: rows older than this are pruned.
    """

    def __init__(self, *, uow_factory: UnitOfWorkFactory, retention_days: int) -> None:
        self._uow_factory = uow_factory
        self._retention = timedelta(days=retention_days)

    async def seal(self, *, wait: bool = False) -> int | None:
        """Chains every committed unsealed row, one batch per transaction.

        Every ``keyturn serve`` and ``keyturn worker`` process calls this each
        ``KEYTURN_AUDIT_SEAL_SECONDS``; the database lets one of them in at a time. Returns how many
        rows were sealed, or ``None`` when another process holds the sealer lock (``wait``
        blocks for it instead: the operator's ``keyturn audit seal``).
        """
        total = 0
        while True:
            async with self._uow_factory() as uow:
                sealed = await uow.audit.seal_pending(limit=SEAL_BATCH, wait=wait)
                await uow.commit()
            if sealed is None:
                # Another sealer took over between two batches: the rest is theirs.
                return total or None
            total += sealed
            if sealed < SEAL_BATCH:
                return total

    async def verify(
        self, *, batch_size: int, progress: Callable[[int], None] | None = None
    ) -> ChainReport:
        """Walk the sealed chain; the report names the first bad row and the unsealed tail."""
        async with self._uow_factory() as uow:
            return await uow.audit.verify(batch_size=batch_size, progress=progress)

    async def prune(self) -> PruneResult:
        """Seal, then delete the rows past the retention behind a checkpoint (one transaction)."""
        now = utcnow()
        async with self._uow_factory() as uow:
            result = await uow.audit.prune(before=now - self._retention, now=now)
            await uow.commit()
        return result
