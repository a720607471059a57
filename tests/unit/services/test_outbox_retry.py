"""The outbox retry schedule (DESIGN.md section 6): 5 s, doubling, capped at 5 minutes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.services.outbox import (
    DEAD_AFTER,
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    retry_delay,
)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 300), (8, 300), (50, 300)],
)
def test_delay_doubles_from_five_seconds_up_to_five_minutes(attempts: int, seconds: int) -> None:
    assert retry_delay(attempts) == seconds


def test_the_documented_constants() -> None:
    assert (FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS) == (5, 300)
    assert DEAD_AFTER.total_seconds() == 24 * 3600


def test_no_attempt_yet_waits_the_first_delay() -> None:
    assert retry_delay(0) == 5


@given(st.integers(min_value=1, max_value=100_000))
def test_delay_is_bounded_and_never_shrinks(attempts: int) -> None:
    delay = retry_delay(attempts)
    assert FIRST_RETRY_SECONDS <= delay <= MAX_RETRY_SECONDS
    assert retry_delay(attempts + 1) >= delay
    assert retry_delay(attempts + 1) in (2 * delay, MAX_RETRY_SECONDS)
