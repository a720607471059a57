"""``/v1/admin/users``: user administration [users:read / users:write]."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.admin_users import (
    AdminSessionList,
    AdminUserList,
    AdminUserOut,
    CreateUserRequest,
    UpdateUserRequest,
)
from keyturn.api.rest.schemas.common import SessionOut
from keyturn.domain import ClientInfo, Principal
from keyturn.domain_mfa import NO_FACTORS
from keyturn.services.admin.users import AdminUserService

router = APIRouter(prefix="/v1/admin/users", tags=["admin"])

Reader = Annotated[Principal, Depends(require_permission("users:read"))]
Writer = Annotated[Principal, Depends(require_permission("users:write"))]
UserAction = Callable[[AdminUserService, Principal, uuid.UUID, ClientInfo], Awaitable[object]]


def _action(method: str, path: str, summary: str, act: UserAction) -> None:
    """A route that applies ``act`` to one user and answers 204 (named after ``act``)."""

    async def endpoint(
        user_id: uuid.UUID, principal: Writer, services: ServicesDep, client: ClientDep
    ) -> None:
        await act(services.admin_users, principal, user_id, client)

    router.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=act.__name__,
        summary=summary,
        **no_content(401, 403, 404, 422),
    )


@router.get("", responses=problems(401, 403, 422), summary="List or search users")
async def list_users(
    principal: Reader,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=320, description="Prefix of email or name")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> AdminUserList:
    page = await services.admin_users.list_users(principal, q=q, limit=limit, cursor=cursor)
    mfa = await services.mfa.factors.statuses_of(principal, [user.id for user in page.items])
    return AdminUserList.of(page, lambda user: AdminUserOut.with_mfa(user, mfa[user.id]))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 401, 403, 409, 422),
    summary="Create a user; a set-password link is mailed to them",
)
async def create_user(
    body: CreateUserRequest, principal: Writer, services: ServicesDep, client: ClientDep
) -> AdminUserOut:
    user = await services.admin_users.create_user(
        principal, email=str(body.email), name=body.name, client=client
    )
    return AdminUserOut.with_mfa(user, NO_FACTORS)


@router.get("/{user_id}", responses=problems(401, 403, 404, 422), summary="One user")
async def get_user(user_id: uuid.UUID, principal: Reader, services: ServicesDep) -> AdminUserOut:
    user = await services.admin_users.get_user(principal, user_id)
    return AdminUserOut.with_mfa(user, await services.mfa.factors.status_of(principal, user.id))


@router.patch(
    "/{user_id}",
    responses=problems(400, 401, 403, 404, 422),
    summary="Update a user (disabling ends their sessions)",
)
async def update_user(
    user_id: uuid.UUID,
    body: UpdateUserRequest,
    principal: Writer,
    services: ServicesDep,
    client: ClientDep,
) -> AdminUserOut:
    user = await services.admin_users.update_user(
        principal,
        user_id,
        name=body.name,
        set_name="name" in body.model_fields_set,
        email_verified=body.email_verified,
        disabled=body.disabled,
        client=client,
    )
    return AdminUserOut.with_mfa(user, await services.mfa.factors.status_of(principal, user.id))


_action("DELETE", "/{user_id}", "Delete", AdminUserService.delete_user)
_action(
    "POST",
    "/{user_id}/lock",
    "Lock until unlocked (ends their sessions)",
    AdminUserService.lock_user,
)
_action(
    "POST",
    "/{user_id}/unlock",
    "Lift a lock (an administrator's or the automatic one)",
    AdminUserService.unlock_user,
)
_action(
    "POST",
    "/{user_id}/reset-password",
    "Clear the password, end sessions, mail a set-password link",
    AdminUserService.reset_password,
)


@router.get(
    "/{user_id}/sessions", responses=problems(401, 403, 404, 422), summary="A user's sessions"
)
async def list_sessions(
    user_id: uuid.UUID,
    principal: Reader,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AdminSessionList:
    page = await services.admin_users.sessions(principal, user_id, limit=limit, cursor=cursor)
    return AdminSessionList.of(page, lambda item: SessionOut.of(item, principal.session_id))


_action(
    "DELETE", "/{user_id}/sessions", "End every session of a user", AdminUserService.end_sessions
)


@router.delete(
    "/{user_id}/mfa",
    **no_content(401, 403, 404, 422),
    summary="Reset a user's second factors (authenticator app, recovery codes, passkeys)",
)
async def reset_mfa(
    user_id: uuid.UUID, principal: Writer, services: ServicesDep, client: ClientDep
) -> None:
    await services.mfa.factors.reset_by_admin(principal, user_id, client)
