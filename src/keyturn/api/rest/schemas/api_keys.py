"""Bodies of ``/v1/me/api-keys`` (personal API keys)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from keyturn.api.rest.schemas.common import (
    NO_CONTROL_CHARACTERS,
    ApiKeyOut,
    FromDomain,
    Page,
    Request,
)

KeyName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS
    ),
]
Scope = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ApiKeyIn(Request):
    name: KeyName
    # Omitted: `me:read` only. Self-service scopes and permissions the caller holds.
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=32)] | None = None
    expires_at: AwareDatetime | None = None


class ApiKeyList(Page[ApiKeyOut]):
    # Every key in one answer: never a next page.
    next_cursor: str | None = None


class ApiKeyCreated(FromDomain):
    """The new key; ``key`` (``kt_<prefix>_<secret>``) is shown exactly once."""

    id: uuid.UUID
    key: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
