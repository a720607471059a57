"""HTTP hardening (DESIGN.md section 5): trusted proxies, https-only, TRACE, CORS, docs.

``install_hardening(app, settings)`` adds every edge middleware in one place, in this order
(outermost first):

1. :class:`ClientAddressMiddleware` resolves the client address and scheme once, through the
   trusted-proxy list, so everything below (headers, guards, rate-limit keys, audit rows)
   sees the same answer (authentik CVE-2024-47070: a spoofed X-Forwarded-For must never
   change them).
2. :class:`~keyturn.api.http.middleware.RequestContextMiddleware`: request id, access log and the
   security headers, so every answer below it, early refusals included, carries them.
3. :class:`TransportGuardMiddleware`: TRACE/TRACK/CONNECT and plain http in production.
4. :class:`~keyturn.api.http.cors.OAuthCorsMiddleware`: preflights on the OAuth token,
   userinfo and revocation endpoints from origins an OAuth client registered; then
   Starlette's ``CORSMiddleware`` with the configured first-party allow-list.
5. :class:`~keyturn.api.http.middleware.BodyLimitMiddleware`.
6. :class:`~keyturn.api.http.head_requests.HeadAsGetMiddleware`: HEAD runs as GET without a body
   (RFC 9110 section 9.3.2), innermost so everything above still sees HEAD.

:func:`install_hardening` also returns the same stack without the preflight half of 4 and
without 6, for the lean lane (``keyturn.api.lean.lane``): it sends them only GET and POST requests,
which those two pass through untouched. There the remaining layers run as steps of one
frame (``keyturn.api.http.middleware.FoldedEdge``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyturn.api.http.cors import OAuthCorsMiddleware
from keyturn.api.http.head_requests import HeadAsGetMiddleware
from keyturn.api.http.middleware import (
    BodyLimitMiddleware,
    FoldedEdge,
    RequestContextMiddleware,
)
from keyturn.api.problems import problem
from keyturn.config import ConfigError, Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The scope key holding the resolved client address (``keyturn.api.http.deps.get_client``).
CLIENT_IP_KEY = "keyturn.client_ip"

# RFC 9110 section 9.3.8 (TRACE echoes the request, cookies and tokens included: XST);
# TRACK is IIS's alias; CONNECT turns the server into a tunnel. None is ever served.
REFUSED_METHODS = frozenset({"TRACE", "TRACK", "CONNECT"})
# RFC 9110 section 15.5.6: a 405 names the methods that are served.
SERVED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# Probes carry no credentials and often cannot speak TLS (DESIGN.md section 3).
PLAIN_HTTP_PATHS = frozenset({"/healthz", "/readyz"})

CORS_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
CORS_EXPOSE = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)
CORS_MAX_AGE = 600


def _ip(text: str) -> IPAddress | None:
    """Parses one bare address; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(entry: str) -> IPNetwork:
    network = ipaddress.ip_network(entry, strict=False)
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped):
        # Peers are normalised to IPv4, so a mapped entry must be too or it never matches.
        base = network.network_address.ipv4_mapped
        assert base is not None  # noqa: S101  (subnet_of(::ffff:0:0/96) guarantees it)
        return ipaddress.IPv4Network(f"{base}/{network.prefixlen - 96}")
    return network


class TrustedProxies:
    """The ``KEYTURN_TRUSTED_PROXIES`` list, parsed once; resolves a request's client.

    Args:
        entries: IP addresses or CIDR networks, IPv4 or IPv6.

    Raises:
        ConfigError: an entry is not an address or a network (the process must not start).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[IPNetwork] = []
        invalid: list[str] = []
        for entry in entries:
            try:
                networks.append(_network(entry.strip()))
            except ValueError:
                invalid.append(entry)
        if invalid:
            raise ConfigError(
                "KEYTURN_TRUSTED_PROXIES entries must be IP addresses or CIDR networks; "
                f"refused: {', '.join(repr(entry) for entry in invalid)}"
            )
        self.networks = tuple(networks)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def resolve(
        self,
        peer: str | None,
        scheme: str,
        forwarded_for: list[str],
        forwarded_proto: list[str],
    ) -> tuple[str | None, str]:
        """The client address and scheme for one request.

        Args:
            peer: the socket peer's address.
            scheme: the scheme of the socket (``http`` or ``https``).
            forwarded_for: every X-Forwarded-For value, in order of appearance.
            forwarded_proto: every X-Forwarded-Proto value, in order of appearance.

        Returns:
            ``(ip, scheme)``. Headers count only when the peer is a trusted proxy.
        """
        peer_ip = _ip(peer) if peer else None
        if peer_ip is None:
            return peer, scheme
        if not self.trusts(peer_ip):
            # An untrusted peer's X-Forwarded-* are ignored entirely (CVE-2024-47070).
            return str(peer_ip), scheme
        hops = [part.strip() for value in forwarded_for for part in value.split(",")]
        client, index = peer_ip, len(hops)
        # From the right: each trusted proxy appended the address it saw; the first hop no
        # trusted proxy vouches for is the client. Anything left of it is client-written.
        for position in range(len(hops) - 1, -1, -1):
            address = _ip(hops[position])
            if address is None:
                # Garbage is never an address to key on: keep the last good hop.
                break
            client, index = address, position
            if not self.trusts(address):
                break
        return str(client), _forwarded_scheme(forwarded_proto, len(hops), index, scheme)


def _forwarded_scheme(values: list[str], hop_count: int, index: int, default: str) -> str:
    """The scheme the client used to reach the first trusted proxy.

    Proxies that append keep X-Forwarded-Proto aligned with X-Forwarded-For, so the entry
    at the client's position is the one that proxy wrote; proxies that overwrite leave a
    single value. Anything but ``http``/``https`` is ignored (fail closed: plain http).
    """
    protos = [part.strip().lower() for value in values for part in value.split(",")]
    if not protos:
        return default
    chosen = protos[index] if len(protos) == hop_count and index < hop_count else protos[-1]
    return chosen if chosen in ("http", "https") else default


def client_ip(scope: Scope) -> str | None:
    """The resolved client address of ``scope`` (the socket peer if nothing resolved it)."""
    if CLIENT_IP_KEY in scope:
        resolved: str | None = scope[CLIENT_IP_KEY]
        return resolved
    peer = scope.get("client")
    if not peer:
        return None
    address = _ip(peer[0])
    return str(address) if address else peer[0]


class ClientAddressMiddleware:
    """Resolves the client address and scheme once per request (the ONE place)."""

    def __init__(self, app: ASGIApp, *, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies
        # Without X-Forwarded-* the answer depends on the peer and the socket's scheme
        # alone, and parsing the address is most of a resolve (about 10 -> 0.2 us, timeit):
        # remembered for the peers seen lately. Forwarded headers are client-written and
        # unbounded, so requests carrying them resolve afresh.
        self._direct = functools.lru_cache(maxsize=4096)(
            lambda peer, scheme: proxies.resolve(peer, scheme, [], [])
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.resolve(scope)
        await self.app(scope, receive, send)

    def resolve(self, scope: Scope) -> None:
        """Sets the client address (``CLIENT_IP_KEY``) and the scheme in ``scope``."""
        forwarded_for: list[str] = []
        forwarded_proto: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.append(bytes(value).decode("latin-1"))
            elif name == b"x-forwarded-proto":
                forwarded_proto.append(bytes(value).decode("latin-1"))
        peer = scope.get("client")
        secure = scope.get("scheme") in ("https", "wss")
        peer_host, socket_scheme = (peer[0] if peer else None), ("https" if secure else "http")
        if forwarded_for or forwarded_proto:
            ip, scheme = self.proxies.resolve(
                peer_host, socket_scheme, forwarded_for, forwarded_proto
            )
        else:
            ip, scheme = self._direct(peer_host, socket_scheme)
        scope[CLIENT_IP_KEY] = ip
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if scheme == "https" else "ws"
        else:
            # URLs built from the request and the HSTS decision follow the resolved scheme.
            scope["scheme"] = scheme


class TransportGuardMiddleware:
    """Refuses TRACE/TRACK/CONNECT everywhere and plain http in production."""

    def __init__(self, app: ASGIApp, *, require_https: bool) -> None:
        self.app = app
        self.require_https = require_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        """The answer to a request this guard refuses, if it does."""
        method = scope["method"].upper()
        if method in REFUSED_METHODS:
            return problem(
                405,
                "method_not_allowed",
                "Method not allowed",
                f"{method} is not served.",
                headers={"allow": SERVED_METHODS},
            )
        if self.require_https and scope["scheme"] != "https" and not _probe(scope):
            # A refusal, not a redirect: the credential already crossed the wire in clear,
            # and a redirect would teach clients that http works.
            return problem(
                403,
                "https_required",
                "HTTPS required",
                "This server only answers over https.",
            )
        return None


def _probe(scope: Scope) -> bool:
    return scope["method"] in ("GET", "HEAD") and scope["path"] in PLAIN_HTTP_PATHS


def cors_origins(entries: Iterable[str]) -> list[str]:
    """Checks ``KEYTURN_CORS_ORIGINS``: exact origins only, never a wildcard.

    Raises:
        ConfigError: ``*``, ``null``, or anything that is not ``scheme://host[:port]``.
    """
    origins: list[str] = []
    for entry in entries:
        origin = entry.strip()
        if origin == "*" or origin.lower() == "null":
            # "*" answers every site; "null" is what sandboxed frames and file:// send.
            raise ConfigError(f"KEYTURN_CORS_ORIGINS refuses {origin!r}: list exact origins")
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "*" in origin
            or f"{parts.scheme}://{parts.netloc}" != origin
        ):
            # Browsers send Origin as scheme://host[:port]; anything else never matches.
            raise ConfigError(
                f"KEYTURN_CORS_ORIGINS entry {origin!r} is not an origin (scheme://host[:port])"
            )
        origins.append(origin)
    return origins


def _edge_layers(settings: Settings) -> list[tuple[Any, dict[str, Any]]]:
    """The edge middleware and their arguments, outermost first (the module docstring).

    Raises:
        ConfigError: invalid trusted proxies or CORS origins (the app must not start).
    """
    cors = {
        "allow_origins": cors_origins(settings.cors_origins),
        # Bearer tokens, not cookies: no credentialed cross-origin requests at all.
        "allow_credentials": False,
        "allow_methods": CORS_METHODS,
        "allow_headers": CORS_HEADERS,
        "expose_headers": CORS_EXPOSE,
        "max_age": CORS_MAX_AGE,
    }
    return [
        (ClientAddressMiddleware, {"proxies": TrustedProxies(settings.trusted_proxies)}),
        (RequestContextMiddleware, {}),
        (TransportGuardMiddleware, {"require_https": settings.is_production}),
        (OAuthCorsMiddleware, {}),
        (CORSMiddleware, cors),
        (BodyLimitMiddleware, {"max_bytes": settings.max_body_bytes}),
        (HeadAsGetMiddleware, {}),
    ]


# The layers that act only on a CORS preflight (OPTIONS) or on HEAD: a GET or a POST
# passes through them untouched. (Starlette's CORSMiddleware is not one: it adds
# "Vary: Origin" to every answer.)
_PREFLIGHT_OR_HEAD_ONLY = (OAuthCorsMiddleware, HeadAsGetMiddleware)
# Every other layer, in order: what FoldedEdge runs as steps. A new edge layer joins it
# (tests/unit/api/test_folded_edge.py fails until it does).
FOLDED = (
    ClientAddressMiddleware,
    RequestContextMiddleware,
    TransportGuardMiddleware,
    CORSMiddleware,
    BodyLimitMiddleware,
)


def install_hardening(app: FastAPI, settings: Settings) -> Callable[[ASGIApp], ASGIApp]:
    """Adds the edge middleware (see the module docstring for the order) to ``app``.

    Returns:
        The same edge for a GET or a POST, to wrap around an app: the same middleware
        with the same arguments, without the two that act only on a preflight or on HEAD
        (``keyturn.api.lean.lane`` sends it nothing else), folded into one frame
        (:class:`~keyturn.api.http.middleware.FoldedEdge`). Settings are read and checked
        once for both.

    Raises:
        ConfigError: invalid trusted proxies or CORS origins (the app must not start).
    """
    layers = _edge_layers(settings)
    # add_middleware puts each new one outside the previous: innermost first.
    for layer, arguments in reversed(layers):
        app.add_middleware(layer, **arguments)
    lean = dict(layers)

    def lean_edge(inner: ASGIApp) -> ASGIApp:
        return FoldedEdge(
            inner,
            address=ClientAddressMiddleware(inner, **lean[ClientAddressMiddleware]),
            guard=TransportGuardMiddleware(inner, **lean[TransportGuardMiddleware]),
            cors=CORSMiddleware(inner, **lean[CORSMiddleware]),
            body=BodyLimitMiddleware(inner, **lean[BodyLimitMiddleware]),
        )

    return lean_edge
