"""deploy/systemd/keyturn.service (issue 16 item 6): `systemd-analyze verify` on the
shipped unit, the hardening directives, the commands it runs, and a real `keyturn serve`
under the memory protection MemoryDenyWriteExecute=yes asks for (argon2's cffi binding,
uvloop and httptools must not need writable executable memory)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import typer

from deploy.platform_checks import DEPLOY, require_tool, settings_named_in, unknown_settings
from e2e.processes import (
    LOW_ARGON2,
    Server,
    keyturn_env,
    keyturn_executable,
    wait_healthy,
)
from helpers import PASSWORD, new_email
from keyturn.cli.main import app
from net import free_port

UNIT = DEPLOY / "systemd" / "keyturn.service"
VENV_BIN = "/opt/keyturn/venv/bin/"
# prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): the kernel's own W^X rule (Linux 6.3+),
# what systemd's MemoryDenyWriteExecute=yes enforces with seccomp; inherited across exec.
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
MDWE_EXEC = (
    "import ctypes, os, sys\n"
    f"if ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit(97)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def directives() -> dict[str, list[str]]:
    """``[Service]`` keys to their values in order (keys repeat: LoadCredential=...)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "`systemd-analyze verify` of the unit")
    # A private root: the system's unit tree, the shipped unit and an executable at the
    # unit's ExecStart path (verify checks that it exists).
    shutil.copytree("/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system/keyturn.service")
    venv_bin = tmp_path / VENV_BIN.lstrip("/")
    venv_bin.mkdir(parents=True)
    shutil.copy(keyturn_executable(), venv_bin / "keyturn")
    result = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", "keyturn.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are only warnings: any output fails the test.
    assert result.returncode == 0, result.stderr
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_the_unit_is_hardened() -> None:
    service = directives()
    expected = {
        "Type": "exec",
        "User": "keyturn",
        "EnvironmentFile": "/etc/keyturn/keyturn.env",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "40",
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "keyturn",
        "ReadWritePaths": "/var/lib/keyturn",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], f"{key}={service.get(key)}"
    assert "@system-service" in service["SystemCallFilter"]


def test_every_secret_comes_from_a_credential() -> None:
    service = directives()
    credentials = {value.split(":", 1)[0] for value in service["LoadCredential"]}
    files = [
        value.split("=", 1)
        for value in service["Environment"]
        if value.split("=", 1)[0].endswith("_FILE")
    ]
    assert {name for name, _ in files} == {
        "KEYTURN_SECRET_KEY_FILE",
        "KEYTURN_DATABASE_URL_FILE",
        "KEYTURN_REDIS_URL_FILE",
        "KEYTURN_SMTP_URL_FILE",
    }
    for _, path in files:
        assert path.startswith("%d/"), path
        assert path.removeprefix("%d/") in credentials, path
    assert not unknown_settings(settings_named_in(UNIT.read_text(encoding="utf-8")))


def test_the_commands_the_unit_runs_exist() -> None:
    service = directives()
    assert service["ExecStart"] == [f"{VENV_BIN}keyturn serve"]
    # The `keyturn` console script (keyturn.cli.entry:main) runs this Typer app.
    known = set(typer.main.get_group(app).commands)
    assert {"serve", "migrate"} <= known
    for command in service["ExecStartPre"] + service["ExecStart"]:
        executable, subcommand = command.split()
        assert executable == f"{VENV_BIN}keyturn"
        assert subcommand in known, f"keyturn has no {subcommand!r} command"


@pytest.mark.slow
def test_serve_works_under_memory_deny_write_execute(tmp_path: Path) -> None:
    if ctypes.CDLL(None).prctl(PR_SET_MDWE + 1, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    port = free_port()
    env = keyturn_env(tmp_path / "data", {**LOW_ARGON2, "KEYTURN_PORT": str(port)})
    env["KEYTURN_HOST"] = "127.0.0.1"
    stdout, stderr = tmp_path / "serve.stdout.log", tmp_path / "serve.stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", MDWE_EXEC, keyturn_executable(), "serve"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = Server(f"http://127.0.0.1:{port}", port, tmp_path / "data", process, stdout, stderr)
    try:
        wait_healthy(server)
        email = new_email()
        with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
            signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
            assert signup.status_code == 202, signup.text
            login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text + server.output()
            assert login.json()["access_token"]
    finally:
        server.stop()
    # The wrapper really applied the rule (it exits 97 when prctl fails).
    assert server.returncode == 0, server.output()
