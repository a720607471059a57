"""``/ui/dev/mail``: the dev mailbox (dev only; production never registers these routes).

Each mail shows its text part with its links made clickable and its HTML part in a
sandboxed frame. The HTML is the mail's own markup, so it is served at its own URL under a
CSP ``sandbox`` (an opaque origin: no cookies, no scripts, no forms, even when opened
directly) and framed only by our own mailbox page.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from keyturn.api.ui.kit import KitDep, PageKit

PATH = "/dev/mail"
# Mail links are absolute http(s) URLs (KEYTURN_LINK_* templates); stop at whitespace and
# at the characters that close a URL in plain text.
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
# The mail's own styles may be inline; nothing else loads and nothing runs. Links open a
# new browsing context (<base target>) that leaves the sandbox, so they work as in a
# mail client.
_HTML_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline'; img-src data: https:; frame-ancestors 'self'; form-action 'none'"
)
_BASE_TARGET = '<base target="_blank">'
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def text_parts(text: str) -> list[tuple[str, str | None]]:
    """``text`` as ``(chunk, url)`` pieces: ``url`` set where the chunk is a link."""
    parts: list[tuple[str, str | None]] = []
    position = 0
    for match in _URL.finditer(text):
        if match.start() > position:
            parts.append((text[position : match.start()], None))
        parts.append((match.group(), match.group()))
        position = match.end()
    if position < len(text):
        parts.append((text[position:], None))
    return parts


router = APIRouter(prefix="/ui", include_in_schema=False)


def _framing_csp(kit: PageKit) -> str:
    # The mail page frames the HTML part from our own origin; everything else as usual.
    return kit.renderer.csp.replace("default-src 'none';", "default-src 'none'; frame-src 'self';")


@router.get(PATH)
async def mail_list(request: Request, kit: KitDep) -> Response:
    # HostedPages includes this router only with a mailbox.
    mails = [] if kit.mailbox is None else kit.mailbox.recent()
    return kit.render(request, "dev_mail.html", title="Dev mailbox", mails=mails)


@router.get(PATH + "/{number}")
async def mail_page(request: Request, kit: KitDep, number: int) -> Response:
    mail = None if kit.mailbox is None else kit.mailbox.find(number)
    if mail is None:
        return kit.render(
            request,
            "message.html",
            status=404,
            title="No such mail",
            message="The mailbox keeps the last 100 mails of this process.",
            link=f"/ui{PATH}",
            link_text="Back to the mailbox",
        )
    return kit.render(
        request,
        "dev_mail_one.html",
        title=mail.subject,
        mail=mail,
        parts=text_parts(mail.text),
        csp=_framing_csp(kit),
    )


@router.get(PATH + "/{number}/html")
async def mail_html(kit: KitDep, number: int) -> Response:
    mail = None if kit.mailbox is None else kit.mailbox.find(number)
    if mail is None or mail.html is None:
        return Response(status_code=404)
    # After <head> (before it would drop the page into quirks mode).
    html, found = _HEAD.subn(lambda head: head.group() + _BASE_TARGET, mail.html, count=1)
    return HTMLResponse(
        html if found else _BASE_TARGET + html,
        headers={
            "content-security-policy": _HTML_CSP,
            "cache-control": "no-store",
            "referrer-policy": "no-referrer",
        },
    )
