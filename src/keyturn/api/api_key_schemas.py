"""Bodies of ``/v1/me/api-keys`` (personal API keys)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from keyturn.api.schemas import ApiKeyOut, Request
from keyturn.services.admin import CreatedApiKey

# No control characters (NUL included: PostgreSQL text cannot hold it).
KeyName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
]
Scope = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ApiKeyIn(Request):
    name: KeyName
    # Omitted: `me:read` only. Self-service scopes and permissions the caller holds.
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=32)] | None = None
    expires_at: AwareDatetime | None = None


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None = None


class ApiKeyCreated(BaseModel):
    """The new key; ``key`` (``kt_<prefix>_<secret>``) is shown exactly once."""

    id: uuid.UUID
    key: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, created: CreatedApiKey) -> ApiKeyCreated:
        record = created.record
        return cls(
            id=record.id,
            key=created.key,
            prefix=record.prefix,
            name=record.name,
            scopes=list(record.scopes),
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
