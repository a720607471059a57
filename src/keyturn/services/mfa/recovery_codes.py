"""Recovery codes (issue 15): ten single-use codes, shown once, stored as keyed digests.

A code is 24 characters of the RFC 4648 base32 alphabet (120 bits), shown as
``xxxxxx-xxxxxx-xxxxxx-xxxxxx``. ASVS 5.0 6.5.2 lets a lookup secret of 112 bits or more be
stored under a plain (here keyed) hash; a shorter one would need a salted password hash,
and a redemption would then hash once per stored code. Online guessing is bounded anyway:
every use is throttled and counted like a password (DESIGN.md section 5) and a second step
allows 5 wrong codes. A person types it rarely and from paper, so the input forgives case,
spaces and dashes.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime

from keyturn.security.digests import Digester, KeyRing
from keyturn.services.ports import UnitOfWork

CODE_COUNT = 10
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_LENGTH = 24
_GROUP = 6
_SHAPE = re.compile(rf"^[{_ALPHABET}]{{{_LENGTH}}}$")
_SEPARATORS = re.compile(r"[\s-]+")


def _normal(code: str) -> str | None:
    """The code as stored, or None when it cannot be one (no lookup for junk)."""
    compact = _SEPARATORS.sub("", code[:64]).lower()
    return compact if _SHAPE.fullmatch(compact) else None


def _new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


class RecoveryCodes:
    """Issues and redeems recovery codes inside the caller's unit of work."""

    def __init__(self, *, key_ring: KeyRing) -> None:
        self._digester = Digester(key_ring, "mfa-recovery-code")

    async def issue(self, uow: UnitOfWork, user_id: uuid.UUID, now: datetime) -> list[str]:
        """Replaces the user's codes with a new set and returns it (the only time it shows)."""
        codes = [
            "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH)) for _ in range(CODE_COUNT)
        ]
        await uow.recovery_codes.replace(user_id, [self._digester.digest(c) for c in codes], now)
        return ["-".join(c[i : i + _GROUP] for i in range(0, _LENGTH, _GROUP)) for c in codes]

    async def redeem(self, uow: UnitOfWork, user_id: uuid.UUID, code: str, now: datetime) -> bool:
        """Uses up the matching code; True for exactly one of racing uses (atomic in SQL)."""
        normal = _normal(code)
        if normal is None:
            return False
        # Every key of the ring: codes issued before a `keyturn secret rotate` still work.
        return await uow.recovery_codes.use(user_id, self._digester.candidates(normal), now)
