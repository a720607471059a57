"""Recovery codes: 120 bits each (ASVS 5.0 6.5.2/6.5.4), read back however they are typed."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pytest

from keyturn.domain import utcnow
from keyturn.security.digests import KeyRing
from keyturn.services.mfa import RecoveryCodes

pytestmark = pytest.mark.anyio
SHAPE = re.compile(r"^[a-z2-7]{6}(?:-[a-z2-7]{6}){3}$")


class _Codes:
    """The recovery-code table of one user, in memory (the SQL one has its own tests)."""

    def __init__(self) -> None:
        self.unused: set[str] = set()

    async def replace(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> None:
        self.unused = set(digests)

    async def use(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> bool:
        hit = self.unused.intersection(digests)
        self.unused -= hit
        return bool(hit)


class _Uow:
    def __init__(self) -> None:
        self.recovery_codes = _Codes()


async def test_codes_hold_120_bits_and_read_back_as_typed() -> None:
    codes = RecoveryCodes(key_ring=KeyRing.from_strings(["k" * 40]))
    uow = _Uow()
    user = uuid.uuid4()
    issued = await codes.issue(cast(Any, uow), user, utcnow())
    assert len(issued) == 10
    assert len(set(issued)) == 10
    for code in issued:
        assert SHAPE.fullmatch(code), code
    # 24 characters of a 32-letter alphabet: 24 * 5 = 120 bits (ASVS 6.5.2 needs 112 to
    # store a lookup secret under a plain hash).
    assert len(issued[0].replace("-", "")) * 5 == 120
    # Only digests are kept.
    assert not any(
        code.replace("-", "") in digest for code in issued for digest in uow.recovery_codes.unused
    )
    typed = " ".join(issued[0].upper().split("-"))
    assert await codes.redeem(cast(Any, uow), user, typed, utcnow())
    assert not await codes.redeem(cast(Any, uow), user, issued[0], utcnow())
    assert not await codes.redeem(cast(Any, uow), user, "not a code", utcnow())
    assert len(uow.recovery_codes.unused) == 9
