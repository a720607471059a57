"""Pure-ASGI middleware: request id, access log, latency metric, baseline headers, body cap.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream per request (hot path).
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.api.problems import problem
from keyturn.infra.metrics import REQUEST_LATENCY

log = structlog.get_logger("keyturn.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# DESIGN.md section 5. API answers forbid everything; pages (later) set their own policy.
_BASE_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, https_hsts: bool) -> None:
        self.app = app
        self.https_hsts = https_hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        # An incoming id is kept only if it is harmless to log; otherwise we mint one.
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in _BASE_HEADERS.items():
                    headers.setdefault(name, value)
                # Credentials and personal data must never sit in a shared cache.
                headers.setdefault("cache-control", "no-store")
                if self.https_hsts and scope.get("scheme") == "https":
                    headers.setdefault("strict-transport-security", "max-age=31536000")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUEST_LATENCY.labels(template, scope["method"], str(status)).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with a 413 problem, declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and not declared.isdigit():
            response = problem(400, "bad_request", "Bad request", "Invalid Content-Length.")
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            # Answered before a byte of the body is read.
            response = problem(413, "payload_too_large", _TOO_LARGE, self._detail())
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body parsing; problems.py renders it.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The body must be at most {self.max_bytes} bytes."


_TOO_LARGE = "The request body is too large"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
