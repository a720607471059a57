"""Bodies several routers share: the request base, names and passwords, pages, problems,
and the one user shape (REST, admin REST and GraphQL all build it from ``user_fields``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from keyturn.domain import ConsentListing, Session, User, utcnow
from keyturn.services import paging

T = TypeVar("T")
S = TypeVar("S")

# Passwords are bounded here only against abuse of the parser; the policy (with its own,
# configurable cap checked before hashing) gives the helpful error.
Password = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
# No control characters (NUL included: PostgreSQL text cannot hold it).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS
    ),
]
OneTimeTokenValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class FromDomain(BaseModel):
    """An answer read from the domain object's attributes of the same names."""

    @classmethod
    def of(cls, source: object, **computed: object) -> Self:
        """The shape of ``source``; ``computed`` gives the fields it has no attribute for."""
        fields = {
            name: computed[name] if name in computed else getattr(source, name)
            for name, field in cls.model_fields.items()
            # A field with a default may be missing from both.
            if name in computed or field.is_required() or hasattr(source, name)
        }
        # Nested shapes (a rotation's chains) read their objects' attributes too.
        return cls.model_validate(fields, from_attributes=True)


class Page(BaseModel, Generic[T]):
    """``items`` and the cursor of the next page (null on the last); each listing
    subclasses it under its own name, the name the OpenAPI document shows."""

    items: list[T]
    next_cursor: str | None

    @classmethod
    def of(cls, page: paging.Page[S], shape: Callable[[S], T]) -> Self:
        return cls(items=[shape(item) for item in page.items], next_cursor=page.next_cursor)


class TokenRequest(Request):
    token: OneTimeTokenValue


class Accepted(BaseModel):
    """The request was taken; the answer is the same whatever the address (no enumeration)."""

    status: Literal["accepted"] = "accepted"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str
    title: str
    status: int
    detail: str | None = Field(
        default=None, description="What went wrong this time; left out when the title says it all"
    )
    code: str = Field(description="Stable machine-readable error code")
    errors: list[dict[str, str]]


def user_fields(user: User) -> dict[str, Any]:
    """The one user shape: every field an edge shows (the REST user takes the first six)."""
    return {
        "id": user.id,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        # Loaded with the user in the same query (repository joins them): no N+1.
        "roles": list(user.roles),
        "created_at": user.created_at,
        "disabled": user.disabled,
        "locked_until": user.locked_until,
        # The lock in force now, not the kind last recorded (which may have lapsed).
        "lock_kind": user.active_lock(utcnow()),
    }


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    email_verified: bool
    name: str | None
    roles: list[str]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> Self:
        """This shape (or a subclass's, such as the admin user) of ``user``."""
        return cls.model_validate(user_fields(user))


def session_fields(session: Session, current_id: uuid.UUID | None) -> dict[str, Any]:
    """A session as REST and GraphQL show it; ``current``: the caller's own."""
    return {
        "id": session.id,
        "created_at": session.created_at,
        "last_seen_at": session.last_seen_at,
        "ip": session.ip,
        "user_agent": session.user_agent,
        "current": session.id == current_id,
    }


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool

    @classmethod
    def of(cls, session: Session, current_id: uuid.UUID | None) -> Self:
        return cls.model_validate(session_fields(session, current_id))


class ApiKeyOut(FromDomain):
    """A key as listed: never the key itself."""

    id: uuid.UUID
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ConsentOut(FromDomain):
    """A consent: which client may act for the user, with which scopes."""

    id: uuid.UUID
    client_id: str
    client_name: str
    scope: str = Field(description="Space-separated scopes the user allowed")
    created_at: datetime


def consent_out(listing: ConsentListing) -> ConsentOut:
    return ConsentOut.of(listing.consent, client_name=listing.client_name)
