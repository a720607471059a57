"""The one cursor codec (services/paging.py): round trips, and refusals of foreign cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from keyturn.errors import InvalidInput
from keyturn.services.paging import decode_cursor, encode_cursor, page_of, time_and_uuid


def _email_and_id(email: str, user_id: str) -> tuple[str, uuid.UUID]:
    return email, uuid.UUID(user_id)


def test_a_key_round_trips_even_when_its_first_part_holds_the_separator() -> None:
    user_id = uuid.uuid4()
    cursor = encode_cursor("a|b@example.com", user_id)
    assert decode_cursor(cursor, _email_and_id, parts=2) == ("a|b@example.com", user_id)


def test_time_keys_round_trip_and_need_a_zone() -> None:
    moment, item_id = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), uuid.uuid4()
    cursor = encode_cursor(moment.isoformat(), item_id)
    assert decode_cursor(cursor, time_and_uuid, parts=2) == (moment, item_id)
    naive = encode_cursor(moment.replace(tzinfo=None).isoformat(), item_id)
    with pytest.raises(InvalidInput):
        decode_cursor(naive, time_and_uuid, parts=2)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!",
        "not-a-cursor!",
        "é",
        base64.urlsafe_b64encode(b"2026-01-01|x").decode(),
        base64.urlsafe_b64encode(b"no separator").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_foreign_cursors_are_invalid_input_on_the_cursor_field(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor, time_and_uuid, parts=2)
    assert caught.value.errors == [{"field": "cursor", "message": "malformed"}]


def test_an_audit_cursor_of_a_15_digit_id_fits_the_20_characters_rest_admits() -> None:
    assert len(encode_cursor(10**15 - 1)) <= 20


def test_page_of_cuts_the_probe_row_and_points_after_the_last_item() -> None:
    page = page_of([1, 2, 3], 2, str)
    assert page.items == [1, 2]
    assert page.next_cursor == "2"
    last = page_of([1, 2], 2, str)
    assert last.items == [1, 2]
    assert last.next_cursor is None
