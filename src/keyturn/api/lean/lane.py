"""The lean lane: a hot route's request past only the edge layers that act on it.

The lean routes (``keyturn.api.lean``) skipped FastAPI's dependency solving, but their
requests still crossed the whole edge stack and the router: the OAuth preflight layer,
HEAD-as-GET, FastAPI's exit stack, the router's matching and Starlette's per-route
wrappers, each a coroutine frame or two that only passed the request on.

:class:`LeanLane` sits outside the edge. It sends a request for a lean (method, path)
through the same edge layers, run as steps of one frame (what
``keyturn.api.http.hardening.install_hardening`` returns: ``FoldedEdge``), to its handler,
with the app's own exception handlers around it. It takes only requests for which every
skipped layer is a pass-through: a lean route's method (GET or POST: the OAuth preflight answer and
HEAD-as-GET never act on them) and path, with no ``root_path`` (the path in the scope is
the one the router would match). Everything else (a preflight, HEAD, another method, a
mounted app) goes through the full stack, where the same
:class:`~keyturn.api.lean.LeanRoute` serves a HEAD. The equality test
(``tests/integration/api/test_lean_edge_equality.py``) compares both against the FastAPI
routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

EdgeLayers = Callable[[ASGIApp], ASGIApp]


class LeanLane:
    """The outermost edge middleware: lean requests down the short stack, others on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[tuple[str, str], Route],
        edge: EdgeLayers,
        exception_handlers: Mapping[Any, Callable[..., Any]],
    ) -> None:
        self.app = app
        self.routes = dict(routes)  # (method, path) -> route
        # The handlers FastAPI gives its ExceptionMiddleware: all but the 500 one, which
        # ServerErrorMiddleware (outside this one) keeps for what nothing else handled.
        handlers = {
            key: handler
            for key, handler in exception_handlers.items()
            if key not in (500, Exception)
        }
        self.lane = edge(ExceptionMiddleware(_endpoint, handlers=handlers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.routes.get((scope["method"], scope["path"]))
            if route is not None:
                scope[_LANE_ROUTE] = route
                await self.lane(scope, receive, send)
                return
        await self.app(scope, receive, send)


_LANE_ROUTE = "keyturn.lean_route"


async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    route = scope[_LANE_ROUTE]
    # What the router puts into the scope once it matched, and only then: the access log
    # and the latency metric label a request by its route's path template, and one
    # refused above (body cap, https) as "unmatched", as the full stack does.
    scope["route"] = route
    scope["endpoint"] = route.endpoint
    scope["path_params"] = {}
    response = await route.endpoint(Request(scope, receive, send))
    await response(scope, receive, send)
