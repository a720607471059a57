"""``/v1/me``: the signed-in user's own account and sessions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.common import Accepted, SessionOut, TokenRequest, UserOut
from keyturn.api.rest.schemas.me import (
    AccountExport,
    ChangePasswordRequest,
    EmailChangeRequest,
    PasswordConfirmation,
    SessionList,
    UpdateMeRequest,
)
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/me", tags=["me"])

MeRead = Annotated[Principal, Depends(require_scope("me:read"))]
MeWrite = Annotated[Principal, Depends(require_scope("me:write"))]
# Password, email and deletion need a password login: never an API key (issue 5 item 3).
MeWriteFresh = Annotated[Principal, Depends(require_scope("me:write", fresh=True))]
SessionsRead = Annotated[Principal, Depends(require_scope("sessions:read"))]
SessionsWrite = Annotated[Principal, Depends(require_scope("sessions:write"))]


@router.get("", responses=problems(401, 403, 404), summary="The signed-in user")
async def get_me(principal: MeRead, services: ServicesDep) -> UserOut:
    user = await services.users.profile(principal)
    return UserOut.of(user)


@router.patch("", responses=problems(400, 401, 403, 404, 422), summary="Update profile fields")
async def patch_me(body: UpdateMeRequest, principal: MeWrite, services: ServicesDep) -> UserOut:
    # PATCH: only the fields present in the body change (an omitted name is kept).
    if "name" not in body.model_fields_set:
        return UserOut.of(await services.users.me(principal))
    return UserOut.of(await services.users.update_me(principal, name=body.name))


@router.delete(
    "",
    dependencies=[CREDENTIAL_ENDPOINT],
    **no_content(400, 401, 403, 404, 422, 429, 503),
    summary="Delete my account (password required); personal data is removed",
)
async def delete_me(
    body: PasswordConfirmation, principal: MeWriteFresh, services: ServicesDep, client: ClientDep
) -> None:
    await services.account.delete_account(principal, body.password, client)


@router.get("/export", responses=problems(401, 403, 404), summary="Everything held about me")
async def export_me(principal: MeRead, services: ServicesDep) -> AccountExport:
    data = await services.account.export(principal)
    return AccountExport.of(data)


@router.post(
    "/email",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(400, 401, 403, 404, 422, 429, 503),
    summary="Ask to change my email; the new address must confirm",
)
async def change_email(
    body: EmailChangeRequest, principal: MeWriteFresh, services: ServicesDep, client: ClientDep
) -> Accepted:
    await services.account.request_email_change(
        principal, body.password, str(body.new_email), client
    )
    return Accepted()


@router.post(
    "/email/confirm",
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(400, 401, 403, 404, 409, 422, 429),
    summary="Confirm the new address with the token mailed to it",
)
async def confirm_email(
    body: TokenRequest, principal: MeWrite, services: ServicesDep, client: ClientDep
) -> UserOut:
    return UserOut.of(await services.account.confirm_email_change(principal, body.token, client))


@router.post(
    "/password",
    dependencies=[CREDENTIAL_ENDPOINT],
    **no_content(400, 401, 403, 404, 422, 429, 503),
    summary="Change the password (ends every other session)",
)
async def change_password(
    body: ChangePasswordRequest, principal: MeWriteFresh, services: ServicesDep, client: ClientDep
) -> None:
    await services.users.change_password(
        principal, body.current_password, body.new_password, client
    )


@router.get("/sessions", responses=problems(401, 403, 422), summary="My live sessions")
async def list_sessions(
    principal: SessionsRead,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SessionList:
    page = await services.sessions.list_mine(principal, limit=limit, cursor=cursor)
    return SessionList.of(page, lambda item: SessionOut.of(item, principal.session_id))


@router.delete(
    "/sessions",
    **no_content(401, 403),
    summary="End every session except the current one",
)
async def end_other_sessions(
    principal: SessionsWrite, services: ServicesDep, client: ClientDep
) -> None:
    await services.sessions.end_others(principal, client)


@router.delete(
    "/sessions/{session_id}",
    **no_content(401, 403, 404, 422),
    summary="End one of my sessions",
)
async def end_session(
    session_id: uuid.UUID, principal: SessionsWrite, services: ServicesDep, client: ClientDep
) -> None:
    await services.sessions.end(principal, session_id, client)
