"""The lean edge: the hot routes through plain Starlette handlers (issue 18, DESIGN.md 2a).

FastAPI's per-request machinery (dependency solving, body plumbing, response-model
re-validation) was a third of ``GET /v1/me`` and of the token endpoint in the profile.
:func:`install_lean_edge` puts a :class:`LeanRoute` for each hot (method, path) in front
of the router. The FastAPI routes stay where they were: they still describe the paths in
the OpenAPI document, answer every other method (405 with their ``Allow``) and serve the
whole app under ``create_app(settings, lean_edge=False)``. The lean handlers
(``handlers.py``) call the very endpoint functions the FastAPI routes call, and raise the
same errors into the same exception handlers (``api/problems.py``), so the answers are the
same bytes; ``tests/integration/api/test_lean_edge_equality.py`` compares them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from keyturn.api.lean import handlers
from keyturn.api.lean.lane import EdgeLayers, LeanLane

Handler = Callable[[Request], Awaitable[Response]]

# (method, path, handler): each path has a FastAPI twin with the same method.
LEAN_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/me", handlers.get_me),
    # Login hashes in the pool, but its event-loop work competes with the hashes for the
    # cores and runs cache-cold beside them: FastAPI's share was ~0.4 ms of ~2.4 (issue 18).
    ("POST", "/v1/auth/login", handlers.login),
    ("POST", "/v1/auth/refresh", handlers.refresh),
    ("POST", "/oauth2/token", handlers.token),
    ("POST", "/oauth2/introspect", handlers.introspect),
    ("GET", "/oauth2/userinfo", handlers.userinfo_get),
    ("POST", "/oauth2/userinfo", handlers.userinfo_post),
    ("GET", "/.well-known/jwks.json", handlers.jwks),
)


class LeanRoute(Route):
    """A static path and ONE method; anything else is no match at all.

    No match (rather than Starlette's partial match) lets another method fall through to
    the FastAPI route of the same path, which answers it as before (405 with its own
    ``Allow``). HEAD never reaches the router (``HeadAsGetMiddleware`` runs it as GET).
    ``route`` goes into the scope like an ``APIRoute`` puts itself there: the access log
    and the latency metric label requests by its ``path``, the same template.
    """

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        super().__init__(path, handler, methods=[method], include_in_schema=False)
        self.method = method

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != self.method:
            return Match.NONE, {}
        # Starlette's own path match (root_path and all), as the FastAPI twin matches.
        match, child_scope = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        child_scope["route"] = self
        return match, child_scope


def install_lean_edge(
    app: FastAPI, *, twins: Iterable[APIRouter], edge: EdgeLayers | None = None
) -> None:
    """Puts the lean routes in front of ``app``'s routes (call after including routers).

    With ``edge`` (the edge layers a lean request needs, as ``install_hardening`` returns
    them) it also adds the :class:`~keyturn.api.lean.lane.LeanLane` outside every
    middleware added so far: call it after the edge middleware and the exception handlers
    are installed.

    Args:
        app: The app, its routers included.
        twins: The routers ``app`` includes without a prefix that hold the FastAPI twins
            (``keyturn.api.routers.include_routers`` returns them). Their own route
            lists are read, not the app's: asking the app for its routes makes FastAPI
            build every route's dependency state at once (about 0.26 s per app, issue 18),
            work it otherwise does per route when a request first needs it.

    Raises:
        RuntimeError: A lean route has no FastAPI twin (the OpenAPI document would not
            describe it): a renamed or removed route must take its lean route with it.
    """
    served = {
        (method, route.path)
        for router in twins
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    lean = [LeanRoute(method, path, handler) for method, path, handler in LEAN_ROUTES]
    missing = [
        f"{route.method} {route.path}" for route in lean if (route.method, route.path) not in served
    ]
    if missing:
        raise RuntimeError(f"lean routes without a FastAPI route: {', '.join(missing)}")
    app.router.routes[0:0] = lean
    if edge is not None:
        app.add_middleware(
            LeanLane,
            routes={(route.method, route.path): route for route in lean},
            edge=edge,
            exception_handlers=app.exception_handlers,
        )
