"""GraphQL object types: thin views of the domain objects (field names as in REST, camelCase)."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from keyturn import domain, domain_mfa
from keyturn.api.graphql.context import GraphQLInfo
from keyturn.api.graphql.fields import field
from keyturn.api.graphql.inputs import check_first
from keyturn.api.graphql.limits import PAGES
from keyturn.api.rest.schemas.common import session_fields, user_fields


@strawberry.type(description="A session, as in `GET /v1/me/sessions`.")
class Session:
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool = strawberry.field(description="Whether the caller's token belongs to it.")

    @classmethod
    def of(cls, session: domain.Session, current_id: uuid.UUID | None) -> Session:
        return cls(**session_fields(session, current_id))


@strawberry.type(description="Second factors, as in `GET /v1/me/mfa` (never a secret).")
class MfaStatus:
    totp: bool
    passkeys: int
    recovery_codes_left: int
    methods: list[str] = strawberry.field(
        description="How a sign-in's second step can be answered: totp, webauthn, recovery_code."
    )

    @classmethod
    def of(cls, status: domain_mfa.MfaStatus) -> MfaStatus:
        return cls(
            totp=status.totp,
            passkeys=status.passkeys,
            recovery_codes_left=status.recovery_codes_left,
            methods=[str(method) for method in status.methods],
        )


@strawberry.type(description="A user account, as in `GET /v1/admin/users/{id}`.")
class User:
    id: uuid.UUID
    email: str
    email_verified: bool
    name: str | None
    roles: list[str]
    created_at: datetime
    disabled: bool
    locked_until: datetime | None
    lock_kind: str | None = strawberry.field(
        description="The lock in force: automatic (the throttle's; a password reset lifts "
        "it), administrative (only an administrator's unlock lifts it), or null."
    )

    @classmethod
    def of(cls, user: domain.User) -> User:
        return cls(**user_fields(user))

    @field("Live sessions, newest first [users:read].")
    async def sessions(
        self, info: GraphQLInfo, first: int = PAGES["User", "sessions"].default
    ) -> list[Session]:
        limit = check_first(first, PAGES["User", "sessions"])
        context = info.context
        # Batched per request: a page of users costs one sessions query, not one per user.
        items = await context.sessions_of_users.load((self.id, limit))
        principal = await context.principal()
        return [Session.of(item, principal.session_id) for item in items]

    @field("Second factors: one's own (`GET /v1/me/mfa`), another user's [users:read].")
    async def mfa(self, info: GraphQLInfo) -> MfaStatus:
        context = info.context
        principal = await context.principal()
        if principal.user_id == self.id and principal.api_key_id is None:
            # One's own, as REST's /v1/me/mfa shows it (an access token, not an API key).
            return MfaStatus.of(await context.services.mfa.factors.status(principal))
        # Batched per request: a page of users costs one permission check.
        return MfaStatus.of(await context.mfa_of_users.load(self.id))


@strawberry.type
class Role:
    name: str
    description: str
    permissions: list[str]
    created_at: datetime

    @classmethod
    def of(cls, role: domain.Role) -> Role:
        return cls(
            name=role.name,
            description=role.description,
            permissions=list(role.permissions),
            created_at=role.created_at,
        )


@strawberry.type
class AuditEvent:
    id: strawberry.ID = strawberry.field(description="A 64-bit integer, as a string.")
    type: str
    occurred_at: datetime
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: JSON

    @classmethod
    def of(cls, event: domain.AuditEvent) -> AuditEvent:
        return cls(
            id=strawberry.ID(str(event.id)),
            type=event.type,
            occurred_at=event.occurred_at,
            user_id=event.user_id,
            session_id=event.session_id,
            ip=event.ip,
            data=JSON(dict(event.data)),
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class UserEdge:
    node: User
    cursor: str


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo


@strawberry.type
class SessionEdge:
    node: Session
    cursor: str


@strawberry.type
class SessionConnection:
    edges: list[SessionEdge]
    page_info: PageInfo


@strawberry.type
class AuditEventEdge:
    node: AuditEvent
    cursor: str


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
