"""Pure-ASGI middleware: request id, access log, latency metric, security headers, body cap.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream per request (hot path).
:class:`FoldedEdge` runs the whole edge of a lean request in one of these frames.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Iterable
from typing import Protocol

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
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
            await self._serve(scope, receive, send_wrapper)
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

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What answers the request, with ``send`` stamping the answer."""
        await self.app(scope, receive, send)


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
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self.limited(receive), send)

    def refusal(self, scope: Scope) -> Response | None:
        """The answer to a request whose declared length is invalid or over the cap."""
        declared = _header(scope, b"content-length")
        if declared is not None and not declared.isdigit():
            return problem(400, "bad_request", "Bad request", "Invalid Content-Length.")
        if declared is not None and int(declared) > self.max_bytes:
            # Answered before a byte of the body is read.
            return problem(413, "payload_too_large", _TOO_LARGE, self._detail())
        return None

    def limited(self, receive: Receive) -> Receive:
        """``receive`` refusing a streamed body once it passes the cap."""
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

        return limited_receive

    def _detail(self) -> str:
        return f"The body must be at most {self.max_bytes} bytes."


_TOO_LARGE = "The request body is too large"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


_VARY = b"vary"


def vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An answer's raw headers with ``Origin`` added to ``Vary``, as Starlette's
    ``CORSMiddleware`` adds it to the answer of a request without ``Origin``
    (``headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])``: the joined
    value takes the first ``Vary``'s place, the others go, none: it goes last) without
    building ``MutableHeaders`` on every answer."""
    headers = list(headers)
    values = [value for name, value in headers if name == _VARY]
    joined = (_VARY, b", ".join([*values, b"Origin"]))
    if not values:
        return [*headers, joined]
    first = next(index for index, (name, _) in enumerate(headers) if name == _VARY)
    return [
        joined if index == first else header
        for index, header in enumerate(headers)
        if header[0] != _VARY or index == first
    ]


class Refuser(Protocol):
    """An edge layer's check of a request: the answer that refuses it, if any."""

    def refusal(self, scope: Scope) -> Response | None: ...


class Resolver(Protocol):
    """The client-address layer: sets the resolved address and scheme in the scope."""

    def resolve(self, scope: Scope) -> None: ...


class FoldedEdge(RequestContextMiddleware):
    """The edge of a lean request in one frame (issue 18): the middleware
    ``keyturn.api.http.hardening.install_hardening`` stacks, as steps.

    Each stacked layer was a coroutine frame entered and resumed on every request, and
    three of them wrapped ``send``: about 25 us of a request's CPU that only passed it on.
    Here the same layers' own code runs in their order: the client address
    (``address``), then this class's request context (id, log, metric, headers), the
    transport guard (``guard``), first-party CORS (``cors``: an answer to a request without
    ``Origin`` gets ``Vary: Origin`` from :func:`vary_origin`, one with ``Origin`` goes
    through Starlette's own code) and the body cap (``body``). An answer refused by the
    guard, or the 500 of an escaped exception, gets no CORS header, as in the stack, where
    both rise above the CORS layer. ``tests/integration/api/test_lean_edge_equality.py``
    compares the answers with the stacked edge's.

    Args:
        app: What answers a request that passed (the lean lane's exception middleware).
        address: The client-address layer (``ClientAddressMiddleware``).
        guard: The transport guard (``TransportGuardMiddleware``).
        cors: The first-party CORS layer (its ``send`` adds the headers).
        body: The body cap (its ``refusal`` and ``limited`` receive).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        address: Resolver,
        guard: Refuser,
        cors: CORSMiddleware,
        body: BodyLimitMiddleware,
    ) -> None:
        super().__init__(app)
        self.address = address
        self.guard = guard
        self.cors = cors
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.address.resolve(scope)
        await super().__call__(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.guard.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if _header(scope, b"origin") is None:

            async def cors_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = vary_origin(message.get("headers", ()))
                await send(message)

        else:
            cors_send = functools.partial(
                self.cors.send, send=send, request_headers=Headers(scope=scope)
            )
        refusal = self.body.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, cors_send)
            return
        await self.app(scope, self.body.limited(receive), cors_send)
