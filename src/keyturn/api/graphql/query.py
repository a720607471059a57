"""Read fields; each checks like its REST route, then calls the same service."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from keyturn.api.graphql.context import GraphQLInfo
from keyturn.api.graphql.fields import field
from keyturn.api.graphql.inputs import check_after, check_first, check_length
from keyturn.api.graphql.limits import PAGES
from keyturn.api.graphql.types import (
    AuditEvent,
    AuditEventConnection,
    AuditEventEdge,
    PageInfo,
    Role,
    Session,
    SessionConnection,
    SessionEdge,
    User,
    UserConnection,
    UserEdge,
)
from keyturn.domain import AuditFilter
from keyturn.services.accounts.sessions import session_cursor
from keyturn.services.admin.audit_log import event_cursor
from keyturn.services.admin.users import user_cursor


@strawberry.type
class Query:
    """Root fields are nullable on purpose: a field the caller may not read becomes null
    with its own ``errors`` entry (path + code), and the other fields keep their data
    (a non-null root would null the whole ``data`` for one denied field)."""

    @field("The signed-in user (`GET /v1/me`) [me:read].")
    async def me(self, info: GraphQLInfo) -> User | None:
        principal = await info.context.with_scope("me:read")
        return User.of(await info.context.services.users.profile(principal))

    @field("My live sessions (`GET /v1/me/sessions`) [sessions:read].")
    async def my_sessions(
        self,
        info: GraphQLInfo,
        first: int = PAGES["Query", "mySessions"].default,
        after: str | None = None,
    ) -> SessionConnection | None:
        limit = check_first(first, PAGES["Query", "mySessions"])
        principal = await info.context.with_scope("sessions:read")
        page = await info.context.services.sessions.list_mine(
            principal, limit=limit, cursor=check_after(after)
        )
        edges = [
            SessionEdge(
                node=Session.of(item, principal.session_id),
                cursor=session_cursor(item),
            )
            for item in page.items
        ]
        return SessionConnection(edges=edges, page_info=_page_info(page.next_cursor))

    @field("Search users by email or name prefix [users:read].")
    async def users(
        self,
        info: GraphQLInfo,
        q: str | None = None,
        first: int = PAGES["Query", "users"].default,
        after: str | None = None,
    ) -> UserConnection | None:
        limit = check_first(first, PAGES["Query", "users"])
        check_length(q, "q", 320)
        principal = await info.context.with_permission("users:read")
        page = await info.context.services.admin_users.list_users(
            principal, q=q, limit=limit, cursor=check_after(after)
        )
        edges = [UserEdge(node=User.of(user), cursor=user_cursor(user)) for user in page.items]
        return UserConnection(edges=edges, page_info=_page_info(page.next_cursor))

    @field("One user (`GET /v1/admin/users/{id}`) [users:read].")
    async def user(self, info: GraphQLInfo, id: uuid.UUID) -> User | None:
        principal = await info.context.with_permission("users:read")
        return User.of(await info.context.services.admin_users.get_user(principal, id))

    @field("Every role (`GET /v1/admin/roles`) [roles:write].")
    async def roles(self, info: GraphQLInfo) -> list[Role] | None:
        principal = await info.context.with_permission("roles:write")
        return [Role.of(role) for role in await info.context.services.roles.list_roles(principal)]

    @field("The audit log, newest first [audit:read].")
    async def audit_events(
        self,
        info: GraphQLInfo,
        user_id: uuid.UUID | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int = PAGES["Query", "auditEvents"].default,
        after: str | None = None,
    ) -> AuditEventConnection | None:
        limit = check_first(first, PAGES["Query", "auditEvents"])
        check_length(type, "type", 64)
        principal = await info.context.with_permission("audit:read")
        where = AuditFilter(user_id=user_id, type=type, since=since, until=until)
        page = await info.context.services.audit_log.search(
            principal, where, limit=limit, cursor=check_after(after)
        )
        edges = [
            AuditEventEdge(node=AuditEvent.of(event), cursor=event_cursor(event))
            for event in page.items
        ]
        return AuditEventConnection(edges=edges, page_info=_page_info(page.next_cursor))


def _page_info(next_cursor: str | None) -> PageInfo:
    # The services hand out the cursor after the last item only when more items exist.
    return PageInfo(has_next_page=next_cursor is not None, end_cursor=next_cursor)
