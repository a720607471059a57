"""Operator commands on the outbox: ``keyturn outbox status`` and the re-encryption of
queued mail for ``keyturn secret rotate``."""

from __future__ import annotations

from collections.abc import Callable

from keyturn.domain import OutboxEntry
from keyturn.services.outbox.ports import PayloadResealer
from keyturn.services.ports import UnitOfWorkFactory

__all__ = ["OutboxMaintenance"]


class OutboxMaintenance:
    """Counts, dead letters and re-encryption of the queued mail.

    Args:
        uow_factory: Units of work over the outbox table.
        resealer: Re-encrypts every stored payload under the ring's first key.
    """

    def __init__(self, *, uow_factory: UnitOfWorkFactory, resealer: PayloadResealer) -> None:
        self._uow_factory = uow_factory
        self._resealer = resealer

    async def status(self, *, dead_limit: int) -> tuple[dict[str, int], list[OutboxEntry]]:
        """Mails per status, and up to ``dead_limit`` dead letters."""
        async with self._uow_factory() as uow:
            return await uow.outbox.counts(), await uow.outbox.list_by_status(
                "dead", limit=dead_limit
            )

    async def reseal(self, progress: Callable[[int], None] | None = None) -> tuple[int, int, int]:
        """Re-encrypt queued mail; returns (re-encrypted, already current, unreadable)."""
        return await self._resealer(progress)
