"""Background jobs that run every few seconds inside each process until shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from keyturn.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)


async def every(
    seconds: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]], failure: str
) -> None:
    """Runs ``job`` every ``seconds`` until ``stop`` is set, waiting first.

    A failed round is logged as ``failure`` and the next round retries: the loop outlives a
    database or Redis outage.
    """
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set():
            return
        try:
            await job()
        except DatabaseUnavailable:
            continue  # the db layer logs an outage once per burst; no trace every round
        except Exception:
            log.exception(failure)
