"""One signing key as operators see it (``keyturn keys list``, the admin API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keyturn.domain import SigningKeyRecord

__all__ = ["KeyInfo", "key_info"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One signing key as operators see it (no private part)."""

    kid: str
    alg: str
    state: str  # next | active | retired | expired | revoked
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    published: bool  # in the JWKS now
    public_jwk: dict[str, str]


def key_info(record: SigningKeyRecord, *, retired_before: datetime) -> KeyInfo:
    """``record`` for operators; a retired key past its publication window (retired before
    ``retired_before``) shows as ``expired`` even before a rotation marks it so."""
    state = record.state
    if state == "retired" and record.retired_at is not None and record.retired_at < retired_before:
        state = "expired"
    return KeyInfo(
        kid=record.kid,
        alg=record.alg,
        state=state,
        created_at=record.created_at,
        activated_at=record.activated_at,
        retired_at=record.retired_at,
        published=state in ("next", "active", "retired"),
        public_jwk=dict(record.public_jwk),
    )
