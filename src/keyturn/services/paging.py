"""Keyset paging for every listing: one page shape and one opaque cursor codec.

A cursor is the sort key of the last item shown, base64url-encoded so it travels in a
query string unescaped. Callers treat it as opaque; anything we did not issue is refused
with ``InvalidInput`` (field ``cursor``), never guessed at.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from keyturn.errors import InvalidInput

T = TypeVar("T")
K = TypeVar("K")

# Only the first part of a key may contain it (an email); the others never do.
_SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """The first ``limit`` of ``rows``, fetched with one extra row that tells whether
    another page exists (then the cursor continues after the last item)."""
    items = list(rows[:limit])
    return Page(items, cursor_of(items[-1]) if len(rows) > limit else None)


def encode_cursor(*key: object) -> str:
    raw = _SEPARATOR.join(str(part) for part in key).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parse: Callable[..., K], *, parts: int) -> K:
    """``parse`` applied to the ``parts`` strings of the key ``cursor`` encodes.

    Raises:
        InvalidInput: When the cursor is not one we issued (``parse`` raising ValueError
            included).
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        key = raw.decode().rsplit(_SEPARATOR, parts - 1)
        if len(key) != parts:
            raise ValueError("not a cursor we issued")
        return parse(*key)
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError included
        raise InvalidInput(
            "The cursor is not valid.", errors=[{"field": "cursor", "message": "malformed"}]
        ) from exc


def aware_time(text: str) -> datetime:
    """A cursor's timestamp; one without a zone is not ours."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("cursor time lacks a zone")
    return moment


def time_and_uuid(created_at: str, item_id: str) -> tuple[datetime, uuid.UUID]:
    """The key of listings ordered by creation time, then id (sessions, consents)."""
    return aware_time(created_at), uuid.UUID(item_id)
