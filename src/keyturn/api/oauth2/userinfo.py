"""``GET|POST /oauth2/userinfo`` (OpenID Connect Core 1.0 section 5.3).

The access token comes as a Bearer token (RFC 6750 section 2.1) on GET or POST, or as the
``access_token`` form parameter of a POST (section 2.2); never in the query (section 2.3
is discouraged and not offered). Errors follow RFC 6750 section 3 (``keyturn.api.problems``
adds the ``WWW-Authenticate: Bearer`` challenge).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from keyturn.api.http.cors import apply_token_client_cors
from keyturn.api.http.deps import ServicesDep
from keyturn.api.oauth2.client_auth import oauth_form
from keyturn.api.oauth2.responses import NO_STORE
from keyturn.errors import CredentialsMissing, OAuthInvalidRequest

router = APIRouter(prefix="/oauth2", tags=["oauth2"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "`sub`; `name` with `profile`; `email`, `email_verified` with `email`"},
    400: {"description": "`invalid_request`: the token was sent in two ways"},
    401: {"description": "`invalid_token` (WWW-Authenticate: Bearer)"},
    403: {"description": "`insufficient_scope`: the token lacks `openid`"},
}


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OAuthInvalidRequest("Send the access token as 'Authorization: Bearer <token>'.")
    return token.strip()


async def _answer(request: Request, services: ServicesDep, token: str | None) -> Response:
    if token is None:
        raise CredentialsMissing
    claims, client_id = await services.userinfo.claims(token)
    response = JSONResponse(claims, headers=NO_STORE)
    await apply_token_client_cors(request, response, services.oauth_cors, client_id)
    return response


@router.get("/userinfo", summary="OpenID Connect UserInfo (Bearer)", responses=RESPONSES)
async def userinfo_get(request: Request, services: ServicesDep) -> Response:
    return await _answer(request, services, _bearer(request))


@router.post(
    "/userinfo",
    summary="OpenID Connect UserInfo (Bearer or `access_token` form parameter)",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"access_token": {"type": "string"}},
                    }
                }
            },
        }
    },
)
async def userinfo_post(request: Request, services: ServicesDep) -> Response:
    header_token = _bearer(request)
    form = await oauth_form(request)
    body_token = form.get("access_token")
    # RFC 6750 section 2: one method per request; both at once is invalid_request.
    if header_token is not None and body_token is not None:
        raise OAuthInvalidRequest("Send the access token in one way only.")
    return await _answer(request, services, header_token or body_token or None)
