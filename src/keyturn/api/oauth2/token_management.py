"""``POST /oauth2/introspect`` (RFC 7662) and ``POST /oauth2/revoke`` (RFC 7009).

Both read ``application/x-www-form-urlencoded`` parameters (``token``,
``token_type_hint``), authenticate the client (RFC 6749 section 2.3) and carry the per-IP
ceiling of every credential endpoint. Which tokens a client may see or end is decided in
``keyturn.services.oauth2.token_management``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from keyturn.api.http.cors import apply_client_cors
from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.api.http.json_response import OrjsonResponse
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.oauth2.client_auth import authenticate_client, form_body, oauth_form
from keyturn.api.oauth2.responses import NO_STORE
from keyturn.domain import ClientInfo, OAuthClient
from keyturn.errors import OAuthInvalidRequest
from keyturn.services.registry import Services

router = APIRouter(prefix="/oauth2", tags=["oauth2"], dependencies=[CREDENTIAL_ENDPOINT])
MAX_TOKEN_LENGTH = 8192


def _token_form(description: str) -> dict[str, Any]:
    return form_body(
        {
            "token": {"type": "string", "maxLength": MAX_TOKEN_LENGTH},
            "token_type_hint": {
                "type": "string",
                "description": "`access_token` or `refresh_token`; a hint only",
            },
        },
        required=["token"],
        description=description,
    )


def _responses(ok: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": ok},
        400: {"description": "`invalid_request`"},
        401: {"description": "`invalid_client` (WWW-Authenticate: Basic)"},
        429: {"description": "`rate_limited`"},
    }


async def _read(
    request: Request, services: Services, client: ClientInfo, *, allow_public: bool
) -> tuple[OAuthClient, str, str | None]:
    """The authenticated client, the token and its type hint."""
    form = await oauth_form(request)
    oauth_client = await authenticate_client(
        request, form, services.clients, client, allow_public=allow_public
    )
    token = form.get("token", "")
    if not token:
        raise OAuthInvalidRequest("The token parameter is required.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise OAuthInvalidRequest("The token parameter is too long.")
    return oauth_client, token, form.get("token_type_hint")


@router.post(
    "/introspect",
    summary="Token introspection (RFC 7662); confidential clients only",
    openapi_extra=_token_form("RFC 7662 section 2.1 parameters"),
    responses=_responses("RFC 7662 section 2.2 answer; `{active: false}` when not active"),
)
async def introspect(request: Request, services: ServicesDep, client: ClientDep) -> Response:
    # RFC 7662 section 2.1: the caller must be authorized; section 4: a confidential
    # client with its secret, so a public client id alone cannot scan tokens.
    oauth_client, token, hint = await _read(request, services, client, allow_public=False)
    answer = await services.oauth_tokens.introspect(token, hint, oauth_client)
    return OrjsonResponse(answer, headers=NO_STORE)


@router.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    openapi_extra=_token_form("RFC 7009 section 2.1 parameters"),
    responses=_responses("Empty: revoked, or nothing to revoke (RFC 7009 section 2.2)"),
)
async def revoke(request: Request, services: ServicesDep, client: ClientDep) -> Response:
    # RFC 7009 section 2.1: confidential clients authenticate; a public client names
    # itself with client_id (it can end only its own grants).
    oauth_client, token, hint = await _read(request, services, client, allow_public=True)
    await services.oauth_tokens.revoke(token, hint, oauth_client, client)
    # Section 2.2: 200 whether or not anything was revoked; the body is ignored.
    response = Response(status_code=200, headers=NO_STORE)
    apply_client_cors(request, response, oauth_client)
    return response
