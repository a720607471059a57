"""Errors raised by the infra adapters.

These are not domain errors: they never reach the HTTP edge as such. A service that
catches one decides how to degrade (DESIGN.md section 6: Redis loss degrades to the
database, it never opens a door).
"""

from __future__ import annotations

__all__ = ["StoreUnavailable"]


class StoreUnavailable(Exception):
    """A shared store (Redis) could not be reached or did not answer in time.

    The original driver exception is chained as ``__cause__``.
    """
