"""``GET /``: what this server is and where to go next.

A browser (``Accept: text/html``) gets a small page; any other client gets the same links
as JSON, so ``curl`` on the base URL answers something useful instead of a 404. Left out
of the OpenAPI document, like every page.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyturn.api.ui.kit import KitDep
from keyturn.config import Settings


def landing_links(settings: Settings, *, dev_mailbox: bool) -> dict[str, str]:
    """Absolute URLs (under the issuer) of the places a newcomer looks for first."""
    base = settings.issuer
    links = {
        "sign_in": f"{base}/ui/login",
        "sign_up": f"{base}/ui/signup",
        "openid_configuration": f"{base}/.well-known/openid-configuration",
        "jwks": f"{base}/.well-known/jwks.json",
    }
    if settings.show_docs:
        links["docs"] = f"{base}/docs"
        links["openapi"] = f"{base}/openapi.json"
    if dev_mailbox:
        links["dev_mailbox"] = f"{base}/ui/dev/mail"
    return links


def _wants_html(request: Request) -> bool:
    # A browser's navigation names text/html; API clients send */* or application/json.
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept


router = APIRouter(include_in_schema=False)


@router.get("/")
async def landing(request: Request, kit: KitDep) -> Response:
    settings = kit.settings
    links = landing_links(settings, dev_mailbox=kit.mailbox is not None)
    if _wants_html(request):
        return kit.renderer.page("landing.html", title=settings.brand_name, links=links)
    body = {"name": settings.brand_name, "service": "Keyturn", "issuer": settings.issuer}
    return JSONResponse({**body, "links": links}, headers={"vary": "Accept"})
