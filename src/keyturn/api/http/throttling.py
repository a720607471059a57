"""The per-IP ceiling on credential endpoints (DESIGN.md section 5).

Every request to a credential endpoint counts, successful or not. ``credential_request``
is the one way in, for the router dependency below and for the lean handlers alike.

One Redis round trip per request (issue 18): on the routes in ``DEFERRED_PATHS`` the
first step that costs anything (a password hash, a client secret compare, a refresh token
digest, a token signature) sits behind the credential guard, so the per-IP hit waits for
that guard and joins its account+IP check in one script (``Throttle.defer_request``).
When the request ends without reaching a guard (a malformed form, an unknown grant) the
hit is recorded then, and a request over the ceiling still answers 429. Every other
credential route counts up front, before anything else runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, Request

from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.services.accounts import Throttle

__all__ = ["CREDENTIAL_ENDPOINT", "DEFERRED_PATHS", "credential_request"]

# Adding a route here needs its guard to come before any costly step, proven by
# tests/integration/accounts/test_one_round_trip_gate.py (nothing costly over the ceiling).
DEFERRED_PATHS = frozenset(
    {
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/v1/auth/login",
        "/v1/auth/refresh",
    }
)


@asynccontextmanager
async def credential_request(
    throttle: Throttle, ip: str | None, path: str | None
) -> AsyncIterator[None]:
    """Counts one credential request from ``ip`` around the work that answers it.

    Args:
        throttle: The service registry's throttle.
        ip: The caller's address (``get_client``; never read the socket directly).
        path: The route's path template; one in ``DEFERRED_PATHS`` defers the count to the
            request's first credential guard.

    Raises:
        RateLimited: Over the per-IP ceiling: before the work on an up-front route; on a
            deferred route at its guard, or after the work when no guard ran (the work's
            own error, if any, is then replaced by the 429 it would have got up front).
    """
    if path not in DEFERRED_PATHS:
        await throttle.request(ip)
        yield
        return
    pending = throttle.defer_request(ip)
    try:
        yield
    finally:
        await throttle.settle(pending)


async def _count(request: Request, services: ServicesDep, client: ClientDep) -> AsyncIterator[None]:
    route = request.scope.get("route")
    async with credential_request(services.throttle, client.ip, getattr(route, "path", None)):
        yield


# "function" scope: the count is settled when the endpoint returns or raises, before the
# answer is sent, so a late refusal still becomes the 429 answer.
CREDENTIAL_ENDPOINT = Depends(_count, scope="function")
