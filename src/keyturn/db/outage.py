"""Telling a database outage from a bug, and turning the outage into ``DatabaseUnavailable``.

A stopped, restarting or unreachable PostgreSQL shows up as many different exceptions,
depending on when it happens: the socket refuses or times out while connecting
(``OSError``, ``TimeoutError``), the server says it is starting or shutting down (SQLSTATE
57P01-57P03) or is full (53300), the connection is lost mid-statement (class 08, asyncpg's
``ConnectionDoesNotExistError``; SQLAlchemy then marks it ``connection_invalidated``), or
every pooled connection is busy beyond ``pool_timeout`` (SQLAlchemy's ``TimeoutError``).
All of these say "try again later", never "this request is wrong"; everything else
(``IntegrityError``, ``ProgrammingError``, ...) stays what it is, a 500 when unexpected.

The log is one warning per burst, not one per request: while the database is down every
request fails the same way, and a stack trace each would bury everything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import structlog
from sqlalchemy import exc as sa_exc

from keyturn.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)

# SQLSTATE classes and codes that mean "the server cannot serve now" (PostgreSQL
# appendix A): 08 connection exception, 57P01 admin shutdown, 57P02 crash shutdown,
# 57P03 cannot connect now (starting up / shutting down), 53300 too many connections.
_UNAVAILABLE_CLASSES = ("08",)
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# At most one warning per this many seconds per process; the rest are counted into it.
LOG_INTERVAL_SECONDS = 10.0
_MAX_CHAIN = 8


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps: SQLAlchemy's ``orig`` and explicit ``raise ... from``.

    Not ``__context__``: an exception merely handled earlier says nothing about this one.
    """
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < _MAX_CHAIN:
        yield current
        seen += 1
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (see the module docstring).

    Only an error of the database stack itself counts: another adapter's error that
    escapes a unit of work (a ``StoreUnavailable`` wrapping a Redis socket error) is no
    database outage, whatever it wraps.
    """
    if not (
        isinstance(error, sa_exc.SQLAlchemyError | OSError)
        # The driver's own errors, and SQLAlchemy's DB-API adapters of them (plain
        # Exceptions, not SQLAlchemyError, when they escape unwrapped).
        or type(error).__module__.startswith(("asyncpg", "sqlalchemy"))
    ):
        return False
    for link in _chain(error):
        if isinstance(link, sa_exc.TimeoutError | OSError):
            # The pool timeout; a refused, reset or timed-out socket (TimeoutError and
            # ConnectionError are OSErrors).
            return True
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and (
            state in _UNAVAILABLE_STATES or state.startswith(_UNAVAILABLE_CLASSES)
        ):
            return True
    return False


class OutageLog:
    """One warning per ``LOG_INTERVAL_SECONDS``, carrying how many failures it stands for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def record(self, error: BaseException) -> None:
        """Logs ``error`` unless a warning went out less than the interval ago (counted)."""
        moment = self._clock()
        if self._last is not None and moment - self._last < LOG_INTERVAL_SECONDS:
            self._suppressed += 1
            return
        self._last = moment
        # Type names only: no message (a connect error may quote the URL, and so a
        # password), no trace (the cause lies outside this process).
        log.warning(
            "database_unavailable",
            error_type=type(error).__name__,
            cause=_cause_name(error),
            failures_since_last=self._suppressed,
        )
        self._suppressed = 0


def _cause_name(error: BaseException) -> str:
    # The innermost error says most (ConnectionRefusedError, CannotConnectNowError).
    names = [type(link).__name__ for link in _chain(error)]
    return names[-1]


OUTAGE_LOG = OutageLog()


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """The domain error for an outage ``error`` (logged, rate-limited); raise it ``from error``."""
    OUTAGE_LOG.record(error)
    return DatabaseUnavailable("The service cannot reach its storage right now; retry shortly.")
