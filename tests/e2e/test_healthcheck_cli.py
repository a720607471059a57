"""``keyturn healthcheck``: the container HEALTHCHECK (Dockerfile), run as a real command.

The command reads the listener settings a container gives ``keyturn serve`` (a wildcard
``KEYTURN_HOST``, ``KEYTURN_PORT``, TLS when a certificate is set) and must have no side
effects: every run here points ``KEYTURN_DATA_DIR`` at a directory that must still not
exist afterwards, and sets no secret.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from e2e.conftest import StartServer
from e2e.processes import (
    COMMAND_TIMEOUT,
    START_DEADLINE,
    Server,
    keyturn_env,
    keyturn_executable,
    run_keyturn,
)
from keyturn.cli.healthcheck import listener_base_url, probe
from keyturn.cli.main import app
from net import free_port, self_signed_certificate

pytestmark = pytest.mark.slow


def probe_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """A prober's environment: the container's wildcard bind, this port, an unmade data dir."""
    return keyturn_env(
        tmp_path / "probe-data",
        {"KEYTURN_HOST": "0.0.0.0", "KEYTURN_PORT": str(port), **extra},  # noqa: S104
    )


@pytest.fixture
def no_side_effects(tmp_path: Path) -> Iterator[None]:
    yield
    assert not (tmp_path / "probe-data").exists(), "keyturn healthcheck created the data dir"


@pytest.mark.usefixtures("no_side_effects")
def test_healthy_then_stopped_server(server: Server, tmp_path: Path) -> None:
    env = probe_env(tmp_path, server.port)
    # The liveness and the readiness probe as real commands, both at once (each starts an
    # interpreter; two cores). The embedded database is reachable, so /readyz is 200 too.
    probes = {
        path: subprocess.Popen(
            [keyturn_executable(), "healthcheck", *flags],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, flags in (("/healthz", []), ("/readyz", ["--ready"]))
    }
    for path, process in probes.items():
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        assert process.returncode == 0, out + err
        assert f"http://127.0.0.1:{server.port}{path}: 200" in out

    # Any answer but 200 is unhealthy (in this process: the subprocesses are not measured).
    missing = CliRunner().invoke(app, ["healthcheck", "--url", f"{server.base_url}/nope?x=1"])
    assert missing.exit_code == 1
    assert "/nope?x=1: 404" in missing.output
    # "::" maps to [::1], where this IPv4-only server does not listen.
    listener = {"KEYTURN_HOST": "::", "KEYTURN_PORT": str(server.port)}
    assert CliRunner().invoke(app, ["healthcheck"], env=listener).exit_code == 1

    server.assert_stopped_cleanly()
    stopped = run_keyturn(["healthcheck", "--timeout", "2"], env)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert f"127.0.0.1:{server.port}/healthz" in stopped.stderr


@pytest.mark.usefixtures("no_side_effects")
def test_healthcheck_speaks_tls_when_the_listener_does(
    start_server: StartServer, tmp_path: Path
) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    tls = {"KEYTURN_TLS_CERT_FILE": str(cert_file), "KEYTURN_TLS_KEY_FILE": str(key_file)}
    server = start_server(tls, wait=False)
    url = f"https://127.0.0.1:{server.port}/healthz"
    deadline = time.monotonic() + START_DEADLINE
    while not probe(url, timeout=2.0)[0]:
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, f"never served https\n{server.output()}"
        time.sleep(0.1)

    # The listener settings alone make the command speak https to loopback.
    listener = {"KEYTURN_HOST": "0.0.0.0", "KEYTURN_PORT": str(server.port), **tls}  # noqa: S104
    result = CliRunner().invoke(app, ["healthcheck"], env=listener)
    assert result.exit_code == 0, result.output
    assert f"{url}: 200" in result.output
    # Plain http against the TLS listener gets no 200.
    assert probe(f"http://127.0.0.1:{server.port}/healthz", timeout=2.0)[0] is False
    server.assert_stopped_cleanly()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"KEYTURN_HOST": "0.0.0.0", "KEYTURN_PORT": "9001"}, "http://127.0.0.1:9001"),  # noqa: S104
        ({"KEYTURN_HOST": "::"}, "http://[::1]:8000"),
        ({"KEYTURN_HOST": "[::]"}, "http://[::1]:8000"),
        ({"KEYTURN_HOST": "::1"}, "http://[::1]:8000"),
        ({"KEYTURN_HOST": "localhost"}, "http://localhost:8000"),
        ({"KEYTURN_HOST": "10.1.2.3"}, "http://10.1.2.3:8000"),
        ({"KEYTURN_TLS_CERT_FILE": "/run/secrets/cert.pem"}, "https://127.0.0.1:8000"),
    ],
)
def test_listener_url_from_the_serve_settings(environ: dict[str, str], expected: str) -> None:
    assert listener_base_url(environ) == expected


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/healthz", "file:///etc/passwd", "http://127.0.0.1:99999/healthz"]
)
def test_probe_refuses_what_is_not_an_http_listener(url: str) -> None:
    healthy, detail = probe(url, timeout=1.0)
    assert healthy is False
    assert url in detail


def test_probe_of_a_closed_port_is_unhealthy() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    healthy, detail = probe(url, timeout=1.0)
    assert healthy is False
    assert detail.startswith(f"{url}: ")


def test_the_probe_does_not_load_the_application(tmp_path: Path) -> None:
    """A probe every few seconds must stay cheap: the console script dispatches
    ``healthcheck`` before importing the full CLI (which loads the whole app)."""
    script = (
        "import sys\n"
        "from keyturn.cli.entry import main\n"
        "sys.argv = ['keyturn', 'healthcheck', '--timeout', '1']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    print('exit', stop.code)\n"
        "print('loaded', sorted(m for m in sys.modules if m.startswith('keyturn.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=probe_env(tmp_path, free_port()),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert "exit 1" in result.stdout, result.stdout + result.stderr  # nothing listens there
    loaded = result.stdout.split("loaded ", 1)[1]
    assert "keyturn.app" not in loaded
    assert "keyturn.cli.main" not in loaded
    assert "keyturn.cli.healthcheck" in loaded
