"""Operations: health, readiness, metrics, JWKS and the locally served API docs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from keyturn.api.http.deps import ServicesDep
from keyturn.config import JWKS_MAX_AGE_SECONDS
from keyturn.observability.scrape import render_metrics

log = structlog.get_logger(__name__)

router = APIRouter(tags=["operations"])

READINESS_TIMEOUT = 2.0


@router.get("/healthz", summary="The process is alive (no dependencies checked)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database and shared store reachable",
    responses={503: {"description": "A dependency is down"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in services.readiness_checks.items():
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the probe must answer
            log.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
            checks[name] = "unavailable"
    ready = all(state == "ok" for state in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


# Mounted only while no separate metrics listener is configured (KEYTURN_METRICS_PORT):
# then the public port answers 404 here.
metrics_router = APIRouter(tags=["operations"])


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(await render_metrics(), media_type=CONTENT_TYPE_LATEST)


class JsonWebKeySet(BaseModel):
    """RFC 7517 section 5: the published public keys."""

    keys: list[dict[str, str]]


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 section 8.5.1


@router.get(
    "/.well-known/jwks.json",
    summary="Public signing keys (RFC 7517)",
    response_class=JwkSetResponse,
    response_model=JsonWebKeySet,
)
async def jwks(services: ServicesDep) -> JwkSetResponse:
    body: dict[str, Any] = await services.keys.current_jwks()
    return JwkSetResponse(
        body, headers={"cache-control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"}
    )


# Swagger UI with no inline script: the page CSP allows scripts from this origin only.
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keyturn API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script></body></html>
"""
_DOCS_INIT = b"""window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", deepLinking: true});
"""
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def docs_router(assets: Path) -> APIRouter:
    """``/docs`` with Swagger UI assets served from the installed package (no CDN)."""
    docs = APIRouter(include_in_schema=False)
    headers = {"content-security-policy": _DOCS_CSP, "cache-control": "public, max-age=3600"}

    @docs.get("/docs")
    async def swagger() -> HTMLResponse:
        return HTMLResponse(_DOCS_PAGE, headers=headers)

    @docs.get("/docs/assets/{name}")
    async def asset(name: str) -> Response:
        if name == "init.js":
            return Response(
                _DOCS_INIT, media_type="text/javascript; charset=utf-8", headers=headers
            )
        if name not in _DOCS_ASSETS:
            return Response(status_code=404)
        content = await asyncio.to_thread((assets / name).read_bytes)
        return Response(content, media_type=_DOCS_ASSETS[name], headers=headers)

    return docs
