"""HEAD wherever GET is served (RFC 9110 section 9.3.2), app-wide.

FastAPI routes answer only the methods they declare, so a HEAD on ``/.well-known/*``,
``/healthz`` or a hosted page met 405. RFC 9110 section 9.1 makes GET and HEAD the two
methods every general-purpose server supports, and section 9.3.2 says HEAD is GET without
the content: same status, same header fields. Rather than declare HEAD on every route
(and double the OpenAPI document, where HEAD is implied by GET), this middleware runs a
HEAD request as the GET it mirrors and drops the body on the way out.

The server keeps seeing HEAD (the scope it owns is not changed: uvicorn uses its method to
send no body), and so do the middleware outside this one (access log, metrics, guards).
A route that serves no GET answers HEAD as it answers GET: 405 with ``Allow``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Serves ``HEAD`` as ``GET`` without a body (install innermost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        inner = {**scope, "method": "GET"}

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                # Section 9.3.2: no content; Content-Length stays the GET's (section 8.6).
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(inner, receive, without_body)
        finally:
            # What the router found (route, endpoint, path parameters) for the access log
            # and metrics outside; the method the server and they see stays HEAD.
            scope.update({key: value for key, value in inner.items() if key != "method"})
