"""``keyturn healthcheck``: the container's HEALTHCHECK, without curl in the image.

It asks this process's own listener (the same ``KEYTURN_HOST`` / ``KEYTURN_PORT`` /
``KEYTURN_TLS_CERT_FILE`` that ``keyturn serve`` reads) for ``/healthz`` or ``/readyz``.
It reads those variables straight from the environment and never builds ``Settings``:
building them in dev mode would create the data dir and a secret key, and a probe that runs
every few seconds must have no side effects and need no secret.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import ssl
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import typer

DEFAULT_TIMEOUT = 5.0


def listener_base_url(environ: Mapping[str, str]) -> str:
    """``http(s)://host:port`` of the local listener; a wildcard bind maps to loopback.

    Args:
        environ: The environment to read ``KEYTURN_HOST``/``PORT``/``TLS_CERT_FILE`` from.

    Returns:
        The base URL without a trailing slash (IPv6 literals in brackets).
    """
    host = environ.get("KEYTURN_HOST", "").strip().strip("[]") or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name such as localhost: used as it is
        address = None
    if address is not None and address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    if ":" in host:
        host = f"[{host}]"
    port = environ.get("KEYTURN_PORT", "").strip() or "8000"
    scheme = "https" if environ.get("KEYTURN_TLS_CERT_FILE", "").strip() else "http"
    return f"{scheme}://{host}:{port}"


def _loopback_tls() -> ssl.SSLContext:
    """A context that encrypts but does not authenticate the server.

    The probe talks to its own process over loopback; the served certificate names the
    public host, not 127.0.0.1, so a hostname check would always fail. Liveness is the
    question here, not trust.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """GETs ``url``; healthy only on a 200 answer.

    Args:
        url: The full URL to ask.
        timeout: Seconds for connecting and for the answer.

    Returns:
        Whether the answer was 200, and a one-line description for the operator.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, f"not an http(s) URL: {url}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    connection: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=_loopback_tls()
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"user-agent": "keyturn-healthcheck"})
            status = connection.getresponse().status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError) as error:
        # Refused, timed out, TLS failure, a bad port or a garbled answer: all unhealthy.
        return False, f"{url}: {str(error) or type(error).__name__}"
    return status == 200, f"{url}: {status}"


def healthcheck(
    ready: Annotated[
        bool, typer.Option("--ready", help="Ask /readyz (database and Redis) instead of /healthz")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="Full URL to ask instead of the local listener")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the answer")
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Exit 0 when this process's listener answers /healthz (or /readyz) with 200, else 1."""
    target = url or listener_base_url(os.environ) + ("/readyz" if ready else "/healthz")
    healthy, detail = probe(target, timeout)
    typer.echo(detail, err=not healthy)
    raise typer.Exit(0 if healthy else 1)
