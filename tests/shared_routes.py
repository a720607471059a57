"""Each test process builds FastAPI's per-route state once per route, not once per app.

FastAPI (0.165, pinned in requirements.lock) builds a route's request handler, its
dependency graph and its request and response models (pydantic TypeAdapters) the first
time an app matches a request against the route's router, separately for every app. A
server builds one app; the suite builds one or more per test, and that rebuilding was
about 40 % of the CPU of an ordinary integration test (``_EffectiveRouteContext.
from_api_route``: 12.6 of 29.7 s for ``tests/integration/api``'s first three modules, about
1 ms per route and 100 routes per app).

The state depends only on the route and how its router was included, so a route of a
module-level router (the REST and OAuth routers every app includes as they are) gets its
state built once per process and reused by later apps. Kept per app, as FastAPI does:

* a route whose app has dependency overrides when the state is built (FastAPI looks them
  up through the app the state was built for, so set an override before the app's first
  request: one added after a route's state came from the cache is not seen);
* routes of routers made per app (GraphQL, the hosted pages, the docs): caching them
  would only hold every app's routes alive.

What a request does with the state (validation, dependencies, serialization, errors) is
FastAPI's own code either way; only when it is built changes.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from fastapi import APIRouter, routing

_built: dict[tuple[Any, ...], Any] = {}


@functools.cache
def _module_routers() -> frozenset[int]:
    # Asked when the first app matches its first request: every router module is imported.
    return frozenset(
        id(value)
        for name, module in list(sys.modules.items())
        if name.startswith("keyturn.api")
        for value in vars(module).values()
        if isinstance(value, APIRouter)
    )


def _key(route: Any, context: Any) -> tuple[Any, ...] | None:
    provider = context.dependency_overrides_provider
    if provider is not None and getattr(provider, "dependency_overrides", None):
        return None
    if id(context.included_router) not in _module_routers():
        return None
    # A module-level router and its routes live as long as the process: their ids stay.
    return (
        id(route),
        id(context.included_router),
        context.prefix,
        context.include_in_schema,
        context.max_body_size,
        tuple(context.tags),
        tuple(id(dependency) for dependency in context.dependencies),
    )


def share_route_state_across_apps() -> None:
    """Patches FastAPI's per-inclusion route builder with the process-wide cache."""
    build = routing._EffectiveRouteContext.from_api_route.__func__  # type: ignore[attr-defined]

    def from_api_route(cls: Any, *, original_route: Any, include_context: Any) -> Any:
        key = _key(original_route, include_context)
        if key is None:
            return build(cls, original_route=original_route, include_context=include_context)
        found = _built.get(key)
        if found is None:
            found = build(cls, original_route=original_route, include_context=include_context)
            _built[key] = found
        return found

    routing._EffectiveRouteContext.from_api_route = classmethod(from_api_route)  # type: ignore[method-assign, assignment]
