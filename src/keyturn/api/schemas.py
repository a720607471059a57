"""Request and response bodies of the REST API (pydantic v2; requests forbid unknown fields)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from keyturn.domain import ApiKey, ConsentListing, Session, TokenPair, User
from keyturn.services.accounts import AccountData

# Passwords are bounded here only against abuse of the parser; the policy (with its own,
# configurable cap checked before hashing) gives the helpful error.
Password = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
# No control characters (NUL included: PostgreSQL text cannot hold it).
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SignupRequest(Request):
    email: EmailStr
    password: Password
    name: Name | None = None


class LoginRequest(Request):
    email: EmailStr
    password: Password


class RefreshRequest(Request):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class UpdateMeRequest(Request):
    name: Name | None = None


class ChangePasswordRequest(Request):
    current_password: Password
    new_password: Password


OneTimeTokenValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenRequest(Request):
    token: OneTimeTokenValue


class EmailRequest(Request):
    email: EmailStr


class ResetPasswordRequest(Request):
    token: OneTimeTokenValue
    password: Password


class EmailChangeRequest(Request):
    password: Password
    new_email: EmailStr


class PasswordConfirmation(Request):
    password: Password


class Accepted(BaseModel):
    """The request was taken; the answer is the same whatever the address (no enumeration)."""

    status: Literal["accepted"] = "accepted"


class SignupAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    verification_required: bool


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    email_verified: bool
    name: str | None
    roles: list[str]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            email_verified=user.email_verified,
            name=user.name,
            roles=list(user.roles),
            created_at=user.created_at,
        )


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  (a scheme name, not a secret)
    expires_in: int
    refresh_token: str
    user: UserOut

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
            user=UserOut.of(pair.user),
        )


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool

    @classmethod
    def of(cls, session: Session, current_id: uuid.UUID | None) -> SessionOut:
        return cls(
            id=session.id,
            created_at=session.created_at,
            last_seen_at=session.last_seen_at,
            ip=session.ip,
            user_agent=session.user_agent,
            current=session.id == current_id,
        )


class SessionList(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


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


class ExportedSession(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


class ExportedEvent(BaseModel):
    type: str
    occurred_at: datetime
    ip: str | None
    session_id: uuid.UUID | None


class ApiKeyOut(BaseModel):
    """A key as listed: never the key itself."""

    id: uuid.UUID
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            prefix=key.prefix,
            name=key.name,
            scopes=list(key.scopes),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
        )


class ConsentOut(BaseModel):
    """A consent: which client may act for the user, with which scopes."""

    id: uuid.UUID
    client_id: str
    client_name: str
    scope: str = Field(description="Space-separated scopes the user allowed")
    created_at: datetime

    @classmethod
    def of(cls, listing: ConsentListing) -> ConsentOut:
        consent = listing.consent
        return cls(
            id=consent.id,
            client_id=consent.client_id,
            client_name=listing.client_name,
            scope=consent.scope,
            created_at=consent.created_at,
        )


class ConsentList(BaseModel):
    items: list[ConsentOut]
    next_cursor: str | None


class AccountExport(BaseModel):
    user: UserOut
    sessions: list[ExportedSession]
    api_keys: list[ApiKeyOut]
    consents: list[ConsentOut]
    audit_events: list[ExportedEvent]

    @classmethod
    def of(cls, data: AccountData) -> AccountExport:
        return cls(
            user=UserOut.of(data.user),
            sessions=[
                ExportedSession(
                    id=item.id,
                    created_at=item.created_at,
                    last_seen_at=item.last_seen_at,
                    expires_at=item.expires_at,
                    ip=item.ip,
                    user_agent=item.user_agent,
                )
                for item in data.sessions
            ],
            api_keys=[ApiKeyOut.of(key) for key in data.api_keys],
            consents=[ConsentOut.of(item) for item in data.consents],
            audit_events=[
                ExportedEvent(
                    type=event.type,
                    occurred_at=event.occurred_at,
                    ip=event.ip,
                    session_id=event.session_id,
                )
                for event in data.audit_events
            ],
        )
