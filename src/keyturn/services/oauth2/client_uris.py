"""The URIs an OAuth 2.0 client registers: pure checks, no storage, no HTTP.

Redirect URIs follow RFC 6749 3.1.2, RFC 9700 2.1 / 4.1 and RFC 8252 7.1, 7.3, 8.3 (stored
and compared exactly; a public client's loopback port may differ); CORS origins are bare
serialized origins (RFC 6454 6.1); the pages the consent screen links to are https.
See docs/technical/2026-11-26_backend_security-implementation.md (V10).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from keyturn.domain import OAuthClient
from keyturn.errors import InvalidClientMetadata, InvalidRedirectUri

MAX_URI_LENGTH = 2000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})

# RFC 3986 section 2: unreserved, reserved and '%'. Anything else (space, quotes, '<>',
# '\\', non-ASCII, controls) must be percent-encoded; '\\' in particular is read as '/'
# by browsers (WHATWG URL) but not by urlsplit, a classic redirect-check bypass.
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# RFC 8252 section 7.1: a reverse domain name the app controls, e.g. com.example.app.
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9\-]*(\.[a-z0-9\-]+)+$")
_HOST_NAME = re.compile(
    r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*$"
)
_ORIGIN = re.compile(r"^(https?)://([^/?#@\\]+)$")
# RFC 8252 section 7.3: the loopback IP literals whose port a native app picks at run
# time ('localhost' is not one: RFC 8252 section 8.3, and registration refuses it).
_LOOPBACK_PREFIXES = ("http://127.0.0.1", "http://[::1]")
# A port as a browser sends it: 1..65535 written without leading zeros, followed by the
# path, the query or nothing (never '@', '#' or more host).
_PORT = re.compile(r"^:([1-9][0-9]{0,4})(?=[/?]|$)")


def _refuse_uri(field: str, message: str) -> InvalidRedirectUri:
    return InvalidRedirectUri(f"{field}: {message}", errors=[{"field": field, "message": message}])


def _refuse_page(field: str, message: str) -> InvalidClientMetadata:
    return InvalidClientMetadata(
        f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def check_page_uri(uri: str, *, field: str) -> str:
    """Checks a page the consent screen links to (``client_uri``, ``policy_uri``, ``tos_uri``).

    https only: a user follows these links from our page (no ``http:``, ``javascript:``).

    Raises:
        InvalidClientMetadata: Naming the rule the URI breaks.
    """
    if len(uri) > MAX_URI_LENGTH or not _URI_CHARS.match(uri) or _BAD_PERCENT.search(uri):
        raise _refuse_page(field, f"an https URL of RFC 3986 characters, at most {MAX_URI_LENGTH}")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise _refuse_page(field, "not a valid URL") from None
    if parts.scheme != "https" or not parts.hostname or port == 0:
        raise _refuse_page(field, "must be an https URL with a host (RFC 7591 section 2)")
    if "@" in parts.netloc:
        raise _refuse_page(field, "userinfo ('user@') is not allowed")
    return uri


def _check_host(host: str, field: str) -> None:
    if host == "localhost" or host.endswith(".localhost"):
        raise _refuse_uri(
            field, "localhost is refused; use 127.0.0.1 or [::1] (RFC 8252 section 8.3)"
        )
    if host.startswith("["):
        if not host.endswith("]"):
            raise _refuse_uri(field, "the host is not valid")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise _refuse_uri(field, "the IPv6 literal is not valid") from exc
        return
    if not _HOST_NAME.match(host):
        raise _refuse_uri(field, "the host must be a lower-case DNS name or an IP address")


def _split(uri: str, field: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises ValueError when not 0..65535
    except ValueError as exc:
        raise _refuse_uri(field, "the host or port is not valid") from exc
    if port == 0 or parts.netloc.endswith(":"):
        raise _refuse_uri(field, "the port must be 1 to 65535")
    return parts


def _split_netloc(netloc: str) -> str:
    """The host part of ``host[:port]`` / ``[v6][:port]`` exactly as written."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    return netloc.split(":", 1)[0]


def check_redirect_uri(uri: str, *, public: bool, field: str = "redirect_uris") -> str:
    """Checks one redirect URI; returns it unchanged (stored exactly as given).

    Args:
        uri: The URI as registered.
        public: Whether the client is public (may use a private-use scheme).
        field: The field name reported in the error.

    Returns:
        ``uri``, unchanged.

    Raises:
        InvalidRedirectUri: Naming the rule the URI breaks.
    """
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise _refuse_uri(field, f"must be 1 to {MAX_URI_LENGTH} characters")
    if not _URI_CHARS.match(uri):
        raise _refuse_uri(
            field, "only RFC 3986 characters are allowed; percent-encode anything else"
        )
    if "*" in uri:
        raise _refuse_uri(field, "wildcards are not allowed (exact match, RFC 9700 section 4.1.3)")
    if "#" in uri:
        raise _refuse_uri(field, "a fragment is not allowed (RFC 6749 section 3.1.2)")
    if _BAD_PERCENT.search(uri):
        raise _refuse_uri(field, "a '%' must start a percent-encoding like %2F")
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise _refuse_uri(field, "must be an absolute URI (RFC 6749 section 3.1.2)")
    parts = _split(uri, field)
    if "@" in parts.netloc:
        raise _refuse_uri(field, "userinfo ('user@') is not allowed")
    if scheme in ("https", "http"):
        if not rest.startswith("//") or not parts.netloc:
            raise _refuse_uri(field, f"an {scheme} URI needs a host")
        host = _split_netloc(parts.netloc)
        _check_host(host, field)
        if scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
            raise _refuse_uri(
                field,
                "https is required; plain http only for the loopback addresses "
                "127.0.0.1 and [::1] (RFC 8252 section 7.3)",
            )
        return uri
    if scheme.lower() in ("https", "http"):
        raise _refuse_uri(field, "write the scheme in lower case")
    if not public:
        raise _refuse_uri(
            field,
            "private-use URI schemes are for public (native) clients only "
            "(RFC 8252 section 7.1); confidential clients use https",
        )
    if not _PRIVATE_SCHEME.match(scheme):
        raise _refuse_uri(
            field,
            "a private-use scheme must be a reverse domain name such as com.example.app "
            "(RFC 8252 section 7.1)",
        )
    if parts.netloc or not parts.path.startswith("/") or rest.startswith("//"):
        raise _refuse_uri(
            field, "write a private-use redirect as com.example.app:/path (RFC 8252 section 7.1)"
        )
    return uri


def _without_port(rest: str) -> str | None:
    """What follows ``scheme://host`` once an explicit port is removed; None if the port
    is not one (zero, too large, leading zeros, or followed by anything but a path)."""
    if not rest.startswith(":"):
        return rest
    found = _PORT.match(rest)
    if found is None or int(found.group(1)) > 65535:
        return None
    return rest[found.end() :]


def redirect_uri_matches(registered: str, requested: str, *, public: bool) -> bool:
    """Whether ``requested`` is the redirect URI ``registered`` (RFC 9700 section 4.1.3).

    Exact string comparison, except that a public (native) client's loopback IP redirect
    URI matches at any port (RFC 8252 section 7.3: the app listens on a port the
    operating system hands out). Nothing else may vary: not the scheme, not the host
    (``localhost`` is no loopback IP here), not the path or the query. Confidential
    clients are web servers with a fixed address: they always match exactly.
    """
    if requested == registered:
        return True
    if not public:
        return False
    for prefix in _LOOPBACK_PREFIXES:
        if registered.startswith(prefix) and requested.startswith(prefix):
            wanted = _without_port(registered[len(prefix) :])
            given = _without_port(requested[len(prefix) :])
            return wanted is not None and wanted == given
    return False


def registered_redirect(client: OAuthClient, requested: str) -> bool:
    """Whether ``requested`` matches one of the client's redirect URIs (see above)."""
    return any(
        redirect_uri_matches(registered, requested, public=client.is_public)
        for registered in client.redirect_uris
    )


def check_cors_origin(origin: str, field: str = "allowed_cors_origins") -> str:
    """Checks one CORS origin: ``https://host[:port]`` (http only on loopback)."""
    match = _ORIGIN.match(origin) if len(origin) <= MAX_URI_LENGTH else None
    if match is None or not _URI_CHARS.match(origin):
        raise _refuse_uri(field, "must be a bare origin scheme://host[:port], no path")
    if "*" in origin:
        raise _refuse_uri(field, "wildcards are not allowed")
    scheme, netloc = match.groups()
    host = _split_netloc(netloc)
    if origin != origin.lower():
        raise _refuse_uri(field, "write the origin in lower case, as browsers send it")
    _check_host(host, field)
    _split(origin, field)
    default_port = {"https": ":443", "http": ":80"}[scheme]
    if netloc.endswith(default_port):
        raise _refuse_uri(field, f"leave out the default port {default_port[1:]}")
    bare_host = host.strip("[]")
    if scheme == "http" and bare_host not in LOOPBACK_HOSTS:
        raise _refuse_uri(field, "https is required; plain http only for 127.0.0.1 and [::1]")
    return origin
