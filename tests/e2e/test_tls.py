"""``keyturn serve`` with a cert/key serves TLS 1.2+ only (v5.0.0-12.1.1, issue 4 item 4).

A control server that accepts TLS 1.1 proves the pinned client really speaks 1.1 here, so
the refusal observed against ``keyturn serve`` comes from the server, not the client.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2, START_DEADLINE, Server
from keyturn.cli.main import tls_context
from net import self_signed_certificate

pytestmark = [
    pytest.mark.slow,
    # Pinning a client to TLS 1.0/1.1 is the point; Python warns that those are deprecated.
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]

HOST = "127.0.0.1"
LEGACY = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (SAN IP) and its key, as PEM files."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _client_context(cert_file: Path, low: ssl.TLSVersion, high: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert_file))
    context.minimum_version = low
    context.maximum_version = high
    if high in LEGACY:
        # OpenSSL 3 refuses legacy versions at the default security level on the client side.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        return tls.version()


@pytest.fixture
def legacy_server(certificate: tuple[Path, Path]) -> Iterator[int]:
    """A bare TLS server that still accepts TLS 1.0/1.1 (the control); yields its port."""
    cert_file, key_file = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def tls_server(start_server: StartServer, certificate: tuple[Path, Path]) -> Server:
    cert_file, key_file = certificate
    server = start_server(
        {
            **LOW_ARGON2,
            "KEYTURN_TLS_CERT_FILE": str(cert_file),
            "KEYTURN_TLS_KEY_FILE": str(key_file),
        },
        wait=False,
    )
    _wait_https(server, cert_file)
    return server


def _wait_https(server: Server, cert_file: Path) -> None:
    """Polls ``GET https://.../healthz`` (the fixture's own wait speaks plain http)."""
    deadline = time.monotonic() + START_DEADLINE
    context = ssl.create_default_context(cafile=str(cert_file))
    with httpx.Client(verify=context, timeout=2.0) as http:
        while True:
            assert server.process.poll() is None, f"keyturn serve exited\n{server.output()}"
            try:
                if http.get(f"https://{HOST}:{server.port}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"never served https\n{server.output()}"
            time.sleep(0.05)


def test_the_pinned_legacy_client_works_against_a_permissive_server(
    legacy_server: int, certificate: tuple[Path, Path]
) -> None:
    """The control: without it, a client-side refusal would pass the next test vacuously."""
    context = _client_context(certificate[0], ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
    assert _handshake(legacy_server, context) == "TLSv1.1"


@pytest.mark.parametrize("version", LEGACY, ids=["TLSv1.0", "TLSv1.1"])
def test_serve_refuses_tls_below_1_2_v5_0_0_12_1_1(
    tls_server: Server, certificate: tuple[Path, Path], version: ssl.TLSVersion
) -> None:
    context = _client_context(certificate[0], ssl.TLSVersion.TLSv1, version)
    with pytest.raises(ssl.SSLError):
        _handshake(tls_server.port, context)
    # The refusal is a handshake failure only: the server keeps serving.
    assert tls_server.process.poll() is None


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_serve_answers_over_tls_1_2_and_1_3_with_hsts(
    tls_server: Server, certificate: tuple[Path, Path], version: ssl.TLSVersion, name: str
) -> None:
    context = _client_context(certificate[0], version, version)
    assert _handshake(tls_server.port, context) == name
    with httpx.Client(verify=context, timeout=10.0) as http:
        answer = http.get(f"https://{HOST}:{tls_server.port}/healthz")
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert answer.headers["content-type"] == "application/json; charset=utf-8"


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server: Server) -> None:
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5.0) as http:
        http.get(f"http://{HOST}:{tls_server.port}/healthz")


def test_tls_context_sets_the_floor_whatever_the_host_default() -> None:
    """The floor does not depend on Python's or the distribution's OpenSSL defaults."""

    def permissive() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1
        return context

    config = uvicorn.Config("keyturn.app:create_app_from_env", factory=True)
    assert tls_context(config, permissive).minimum_version == ssl.TLSVersion.TLSv1_2
