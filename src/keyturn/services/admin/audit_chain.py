"""Operator commands on the audit hash chain: ``keyturn audit verify`` and ``prune``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from keyturn.domain import ChainReport, PruneResult, utcnow
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["AuditChainService"]


class AuditChainService:
    """Verifies and prunes the audit log (the CLI's, never an HTTP route's).

    Args:
        uow_factory: Units of work over the audit table.
        retention_days: ``KEYTURN_AUDIT_RETENTION_DAYS``: rows older than this are pruned.
    """

    def __init__(self, *, uow_factory: UnitOfWorkFactory, retention_days: int) -> None:
        self._uow_factory = uow_factory
        self._retention = timedelta(days=retention_days)

    async def verify(
        self, *, batch_size: int, progress: Callable[[int], None] | None = None
    ) -> ChainReport:
        """Walk the chain; the report names the first edited or deleted row."""
        async with self._uow_factory() as uow:
            return await uow.audit.verify(batch_size=batch_size, progress=progress)

    async def prune(self) -> PruneResult:
        """Delete the rows past the retention, behind a checkpoint row (one transaction)."""
        now = utcnow()
        async with self._uow_factory() as uow:
            result = await uow.audit.prune(before=now - self._retention, now=now)
            await uow.commit()
        return result
