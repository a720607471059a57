"""The peers: a fastapi-users app and node-oidc-provider, each in its own environment.

Their environments live under bench/peers/ (``fastapi_users/.venv``,
``oidc_provider/node_modules``), created here on first use and re-created when the pinned
requirements change; never the project's .venv, never committed (.gitignore).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
from pathlib import Path

from bench.harness.options import PEERS_DIR
from bench.harness.servers import Database, HarnessError, Managed, free_port, run_command, spawn

FASTAPI_USERS_DIR = PEERS_DIR / "fastapi_users"
OIDC_DIR = PEERS_DIR / "oidc_provider"
OIDC_CLIENT_ID = "bench-client"
OIDC_CLIENT_SECRET = secrets.token_urlsafe(24)
# JWT access tokens (client_credentials) and opaque ones (introspection), see server.js.
OIDC_JWT_RESOURCE = "urn:keyturn-bench:api"
OIDC_OPAQUE_RESOURCE = "urn:keyturn-bench:opaque"


def _stamp(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_fastapi_users() -> Path:
    """The peer's python, after creating its virtualenv and installing the pinned set."""
    venv = FASTAPI_USERS_DIR / ".venv"
    python = venv / "bin" / "python"
    stamp_file = venv / ".bench-stamp"
    wanted = _stamp(FASTAPI_USERS_DIR / "requirements.txt")
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == wanted:
        return python
    print("creating bench/peers/fastapi_users/.venv (pip install, once)", flush=True)
    run_command([sys.executable, "-m", "venv", "--clear", str(venv)])
    run_command(
        [str(python), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"],
        cwd=FASTAPI_USERS_DIR,
    )
    stamp_file.write_text(wanted)
    return python


def ensure_oidc_provider() -> str | None:
    """The node executable once node_modules is installed; None when node/npm are missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    stamp_file = OIDC_DIR / "node_modules" / ".bench-stamp"
    wanted = _stamp(OIDC_DIR / "package.json", OIDC_DIR / "package-lock.json")
    if stamp_file.exists() and stamp_file.read_text() == wanted:
        return node
    print("installing bench/peers/oidc_provider/node_modules (npm ci, once)", flush=True)
    run_command([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR)
    stamp_file.write_text(wanted)
    return node


def fastapi_users_hash(python: Path, hasher: str, password: str) -> str:
    """A hash of ``password`` made by the peer's own configured hasher (for seeding)."""
    env = {**os.environ, "HASHER": hasher}
    out = run_command(
        [str(python), "app.py", "--hash-only"],
        env=env,
        stdin=password + "\n",
        cwd=FASTAPI_USERS_DIR,
    )
    return out.strip()


def start_fastapi_users(python: Path, database: Database, hasher: str, workdir: Path) -> Managed:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.sqlalchemy_url,
        # Fixed per run so tokens from one start stay valid after a restart with another hasher.
        "JWT_SECRET": _JWT_SECRET,
        "HASHER": hasher,
    }
    argv = [
        str(python),
        "-m",
        "uvicorn",
        "app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = spawn(
        f"fastapi-users-{hasher}", argv, env=env, workdir=workdir, cwd=FASTAPI_USERS_DIR, port=port
    )
    server.wait_ready()
    return server


_JWT_SECRET = secrets.token_urlsafe(32)


def start_oidc_provider(node: str, workdir: Path) -> Managed:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "CLIENT_ID": OIDC_CLIENT_ID,
        "CLIENT_SECRET": OIDC_CLIENT_SECRET,
        "NODE_ENV": "production",
    }
    server = spawn(
        "oidc-provider", [node, "server.js"], env=env, workdir=workdir, cwd=OIDC_DIR, port=port
    )
    server.wait_ready("/.well-known/openid-configuration")
    return server


def require(condition: bool, message: str) -> None:
    if not condition:
        raise HarnessError(message)
