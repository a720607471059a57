"""Pure-ASGI middleware: request id, access log, latency metric, security headers, body cap.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream per request (hot path).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.api.problems import problem
from keyturn.observability.metrics import request_latency

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


def _defaults(public: bool, https: bool) -> tuple[tuple[bytes, bytes], ...]:
    """The headers an answer gets unless it set them itself, in the order they are added."""
    headers = {
        **_BASE_HEADERS,
        "cross-origin-resource-policy": "cross-origin" if public else "same-origin",
        # Credentials and personal data must never sit in a shared cache.
        "cache-control": "no-store",
        **({"strict-transport-security": _HSTS} if https else {}),
    }
    return tuple(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    )


# Built once: (public path, https) -> defaults.
_DEFAULTS = {
    (public, https): _defaults(public, https) for public in (False, True) for https in (False, True)
}
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
                message["headers"] = _stamp(
                    message.get("headers", ()), request_id, _DEFAULTS[public, https]
                )
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
            request_latency(template, scope["method"], status).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


_REQUEST_ID_HEADER = b"x-request-id"
_CONTENT_TYPE = b"content-type"


def _stamp(
    headers: Iterable[tuple[bytes, bytes]],
    request_id: str,
    defaults: tuple[tuple[bytes, bytes], ...],
) -> list[tuple[bytes, bytes]]:
    """An answer's raw headers with the request id, the charset and the defaults, in one pass.

    The same list as Starlette's ``MutableHeaders`` gives for ``headers["x-request-id"] =
    request_id``, ``setdefault`` of each default and ``headers["content-type"] =
    with_charset(...)`` (a set keeps the first header of the name in its place and drops the
    others; a default goes last unless the name is there), at a quarter of the cost: this
    runs on every answer.
    """
    stamped: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for name, value in headers:
        if name in (_REQUEST_ID_HEADER, _CONTENT_TYPE):
            if name in seen:
                continue
            if name == _REQUEST_ID_HEADER:
                value = request_id.encode("latin-1")
            else:
                value = with_charset(value.decode("latin-1")).encode("latin-1")
        seen.add(name)
        stamped.append((name, value))
    if _REQUEST_ID_HEADER not in seen:
        stamped.append((_REQUEST_ID_HEADER, request_id.encode("latin-1")))
    stamped.extend(header for header in defaults if header[0] not in seen)
    return stamped


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
