"""``POST /oauth2/token`` (RFC 6749 section 3.2)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from keyturn.api.http.cors import apply_client_cors
from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.api.http.json_response import OrjsonResponse
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.oauth2.client_auth import authenticate_client, form_body, oauth_form
from keyturn.api.oauth2.responses import NO_STORE

router = APIRouter(tags=["oauth2"])

_OAUTH_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
                "required": ["error", "error_description"],
            }
        }
    }
}
_TOKEN_FORM = form_body(
    {
        "grant_type": {
            "type": "string",
            "enum": ["authorization_code", "refresh_token", "client_credentials"],
        },
        "code": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "code_verifier": {"type": "string"},
        "refresh_token": {"type": "string"},
        "scope": {"type": "string"},
    },
    required=["grant_type"],
)


@router.post(
    "/oauth2/token",
    summary="Token endpoint (RFC 6749 section 3.2): authorization_code, refresh_token, "
    "client_credentials",
    dependencies=[CREDENTIAL_ENDPOINT],
    openapi_extra=_TOKEN_FORM,
    responses={
        200: {
            "description": "RFC 6749 section 5.1 access token response",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                            "refresh_token": {"type": "string"},
                            "id_token": {"type": "string"},
                        },
                        "required": ["access_token", "token_type", "expires_in", "scope"],
                    }
                }
            },
        },
        400: {"description": "RFC 6749 section 5.2 error", **_OAUTH_ERROR},
        401: {"description": "invalid_client (WWW-Authenticate: Basic)", **_OAUTH_ERROR},
        429: {"description": "rate_limited", **_OAUTH_ERROR},
    },
)
async def token(request: Request, services: ServicesDep, client: ClientDep) -> JSONResponse:
    form = await oauth_form(request)
    # RFC 6749 section 3.2.1: confidential clients authenticate; a public client names
    # itself (section 2.1) and proves the code with PKCE instead.
    oauth_client = await authenticate_client(
        request, form, services.clients, client, allow_public=True
    )
    answer = await services.tokens.grant(oauth_client, form, client)
    # Section 5.1: never cached.
    response = OrjsonResponse(answer.as_json(), headers=NO_STORE)
    # A browser client (SPA with PKCE) reads the answer only from its registered origins.
    apply_client_cors(request, response, oauth_client)
    return response
