"""Bodies of ``/v1/admin/keys`` (signing keys: listing, rotation, emergency revocation)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from keyturn.api.rest.schemas.common import FromDomain, Page


class SigningKeyOut(FromDomain):
    kid: str
    alg: str
    state: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    published: bool


class SigningKeyList(Page[SigningKeyOut]):
    # Every key in one answer: never a next page.
    next_cursor: None = None


class ChainRotationOut(FromDomain):
    alg: str
    activated: str | None
    retired: list[str]
    next: str | None


class RotationOut(FromDomain):
    """Top-level fields: the access-token algorithm's chain; ``chains``: every chain."""

    activated: str | None
    retired: list[str]
    next: str | None
    chains: list[ChainRotationOut]


class RevocationOut(FromDomain):
    """An emergency key revocation: the key is out of the JWKS and its tokens are refused."""

    kid: str
    alg: str
    state: str = Field(description="Always `revoked`.")
    previous_state: str = Field(description="next, active, retired, expired, or revoked.")
    already_revoked: bool = Field(description="True when it was revoked before (no change).")
    activated: str | None = Field(
        description="The kid that signs in its place (when the revoked key was active)."
    )
