"""Bodies of the admin API (``/v1/admin``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from keyturn.api.schemas import Name, Request, SessionOut
from keyturn.domain import AuditEvent, Role, User, utcnow
from keyturn.services.admin import AuditPage, UserPage
from keyturn.services.signing_keys import KeyInfo, KeyRevocation, RotationResult

RoleName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=500)]
Permission = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AdminUserOut(BaseModel):
    id: uuid.UUID
    email: str
    email_verified: bool
    name: str | None
    roles: list[str]
    created_at: datetime
    disabled: bool
    locked_until: datetime | None
    lock_kind: Literal["automatic", "administrative"] | None = Field(
        description="The lock in force: automatic (the throttle's; a password reset lifts "
        "it), administrative (only an administrator's unlock lifts it), or null."
    )

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(
            id=user.id,
            email=user.email,
            email_verified=user.email_verified,
            name=user.name,
            roles=list(user.roles),
            created_at=user.created_at,
            disabled=user.disabled,
            locked_until=user.locked_until,
            lock_kind=user.active_lock(utcnow()),
        )


class AdminUserList(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: UserPage) -> AdminUserList:
        return cls(
            items=[AdminUserOut.of(user) for user in page.items], next_cursor=page.next_cursor
        )


class CreateUserRequest(Request):
    email: EmailStr
    name: Name | None = None


class UpdateUserRequest(Request):
    name: Name | None = None
    email_verified: bool | None = None
    disabled: bool | None = None


class AdminSessionList(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


class RoleIn(Request):
    name: RoleName
    description: Description = ""
    permissions: list[Permission] = Field(default_factory=list)


class RolePatch(Request):
    description: Description | None = None
    permissions: list[Permission] | None = None


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    created_at: datetime

    @classmethod
    def of(cls, role: Role) -> RoleOut:
        return cls(
            name=role.name,
            description=role.description,
            permissions=list(role.permissions),
            created_at=role.created_at,
        )


class RoleList(BaseModel):
    items: list[RoleOut]
    next_cursor: None = None


class AuditEventOut(BaseModel):
    id: int
    type: str
    occurred_at: datetime
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            type=event.type,
            occurred_at=event.occurred_at,
            user_id=event.user_id,
            session_id=event.session_id,
            ip=event.ip,
            data=dict(event.data),
        )


class AuditEventList(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: AuditPage) -> AuditEventList:
        return cls(
            items=[AuditEventOut.of(event) for event in page.items], next_cursor=page.next_cursor
        )


class SigningKeyOut(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    published: bool

    @classmethod
    def of(cls, key: KeyInfo) -> SigningKeyOut:
        return cls(
            kid=key.kid,
            alg=key.alg,
            state=key.state,
            created_at=key.created_at,
            activated_at=key.activated_at,
            retired_at=key.retired_at,
            published=key.published,
        )


class SigningKeyList(BaseModel):
    items: list[SigningKeyOut]
    next_cursor: None = None


class ChainRotationOut(BaseModel):
    alg: str
    activated: str | None
    retired: list[str]
    next: str | None


class RotationOut(BaseModel):
    """Top-level fields: the access-token algorithm's chain; ``chains``: every chain."""

    activated: str | None
    retired: list[str]
    next: str | None
    chains: list[ChainRotationOut]

    @classmethod
    def of(cls, result: RotationResult) -> RotationOut:
        return cls(
            activated=result.activated,
            retired=list(result.retired),
            next=result.next,
            chains=[
                ChainRotationOut(
                    alg=chain.alg,
                    activated=chain.activated,
                    retired=list(chain.retired),
                    next=chain.next,
                )
                for chain in result.chains
            ],
        )


class RevocationOut(BaseModel):
    """An emergency key revocation: the key is out of the JWKS and its tokens are refused."""

    kid: str
    alg: str
    state: str = Field(description="Always `revoked`.")
    previous_state: str = Field(description="next, active, retired, expired, or revoked.")
    already_revoked: bool = Field(description="True when it was revoked before (no change).")
    activated: str | None = Field(
        description="The kid that signs in its place (when the revoked key was active)."
    )

    @classmethod
    def of(cls, result: KeyRevocation) -> RevocationOut:
        return cls(
            kid=result.kid,
            alg=result.alg,
            state="revoked",
            previous_state=result.previous_state,
            already_revoked=result.already_revoked,
            activated=result.activated,
        )
