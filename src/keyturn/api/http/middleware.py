"""Pure-ASGI middleware: request id, access log, latency metric, security headers, body cap.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream per request (hot path).
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.api.problems import problem
from keyturn.observability.metrics import REQUEST_LATENCY, method_label

log = structlog.get_logger("keyturn.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# DESIGN.md section 5. API answers forbid everything; pages (/docs) set their own full policy.
_BASE_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
# One year, the floor of the HSTS preload list (OWASP HTTP Headers Cheat Sheet).
_HSTS = "max-age=31536000; includeSubDomains"
# Discovery documents and keys are fetched by other origins' verifiers (no-cors included).
_PUBLIC_PREFIXES = ("/.well-known/",)
_TEXTUAL = ("application/json", "application/javascript", "application/xml")
# nginx's "client closed request": the status a hang-up is counted under (never a 5xx).
CLIENT_CLOSED_REQUEST = 499


class RequestContextMiddleware:
    """Request id, access log, latency metric and the security headers of every answer.

    Runs below the client-address resolution, so ``scope["scheme"]`` is the scheme the
    client used (HSTS only over https). An exception that escapes the app still gets a
    problem answer with these headers before it propagates to the server's error handler.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        response_started = False
        public = scope["path"].startswith(_PUBLIC_PREFIXES)
        https = scope.get("scheme") == "https"

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in _BASE_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault(
                    "cross-origin-resource-policy", "cross-origin" if public else "same-origin"
                )
                # Credentials and personal data must never sit in a shared cache.
                headers.setdefault("cache-control", "no-store")
                if https:
                    headers.setdefault("strict-transport-security", _HSTS)
                content_type = headers.get("content-type")
                if content_type is not None:
                    headers["content-type"] = with_charset(content_type)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client hung up before its body arrived (every body reader raises this:
            # forms, FastAPI's JSON bodies, GraphQL). Nobody is left to answer and it is no
            # server fault: no 500 in the metrics, no traceback to flood the log, only the
            # access line below with status 499.
            if not response_started:
                status = CLIENT_CLOSED_REQUEST
        except Exception:
            if not response_started:
                # The server's own 500 would go out without the headers; ours goes first and
                # the exception still reaches the error handler and the server log.
                response = problem(
                    500, "internal_error", "Internal error", "An unexpected error occurred."
                )
                await response(scope, receive, send_wrapper)
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUEST_LATENCY.labels(template, method_label(scope["method"]), str(status)).observe(
                elapsed
            )
            log.info(
                "request",
                method=scope["method"],
                path=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


def with_charset(content_type: str) -> str:
    """Adds ``charset=utf-8`` to a textual media type that lacks one (JSON included).

    A client that guesses the encoding of a body can be tricked into reading it as
    something else (UTF-7 and friends); every text answer we send is UTF-8.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    textual = (
        media_type.startswith("text/")
        or media_type in _TEXTUAL
        or media_type.endswith(("+json", "+xml"))
    )
    if not textual or "charset=" in content_type.lower():
        return content_type
    return f"{content_type}; charset=utf-8"


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
