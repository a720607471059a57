"""The discovery documents: authorization server metadata (RFC 8414 section 3) and OpenID
provider metadata (OpenID Connect Discovery 1.0 section 4); the JWKS is in ``rest/ops``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse

from keyturn.api.http.deps import ServicesDep

router = APIRouter(tags=["oauth2"])


# Public documents: clients of any origin may cache them.
_CACHED = {"cache-control": "public, max-age=300"}
_METADATA_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Authorization server metadata",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


# One document under both names; each route keeps its own name (its operationId). The
# decorator nearest the function registers first.
@router.get(
    "/.well-known/oauth-authorization-server",
    name="oauth_authorization_server",
    summary="RFC 8414 authorization server metadata",
    response_class=JSONResponse,
    responses=_METADATA_RESPONSE,
)
@router.get(
    "/.well-known/openid-configuration",
    name="openid_configuration",
    summary="OpenID Connect Discovery 1.0 provider metadata",
    response_class=JSONResponse,
    responses=_METADATA_RESPONSE,
)
async def server_metadata(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.server_metadata, headers=_CACHED)
