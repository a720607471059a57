"""Types shared by the second-factor tests (tests/integration/mfa)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp

from keyturn.services.ports import UnitOfWork

UowFactory = Callable[[], UnitOfWork]


@dataclass
class Enrolled:
    """A user with a confirmed TOTP factor; pyotp plays the authenticator app."""

    user_id: uuid.UUID
    headers: dict[str, str]
    secret: str
    recovery_codes: list[str] | None
    confirmed_at: datetime

    def code(self, at: datetime) -> str:
        return pyotp.TOTP(self.secret).at(at)


Enrol = Callable[[dict[str, Any]], Awaitable[Enrolled]]
