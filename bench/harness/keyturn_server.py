"""``keyturn serve`` on PostgreSQL + Redis as the benchmark runs it.

Settings go through the documented environment (DESIGN.md section 3a): the per-IP ceiling
of credential endpoints is raised (wrk sends everything from 127.0.0.1), failure
throttling and account locks stay on (the scenarios send correct credentials), the hash
cost is the production one. Access tokens live 24 h so tokens minted before the runs stay
valid through a long run. The Redis key prefix is the run's own and its keys are deleted
at the end (never FLUSHDB).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.harness.options import Options
from bench.harness.servers import Database, Managed, free_port, run_command, spawn

KEYTURN = str(Path(sys.executable).with_name("keyturn"))
GRANIAN = Path(sys.executable).with_name("granian")
# Pinned: a comparison of servers, not of releases. Installed into the project's .venv on
# first use of --server granian (it must import keyturn); not a runtime dependency.
GRANIAN_REQUIREMENT = "granian==2.8.9"
IP_CEILING = 100_000_000  # per minute: far above anything one machine can send
ACCESS_TOKEN_TTL = 86_400


@dataclass(frozen=True)
class KeyturnSetup:
    env: dict[str, str]
    secret_key: str
    redis_prefix: str


def keyturn_setup(options: Options, database: Database, workdir: Path) -> KeyturnSetup:
    secret_key = secrets.token_urlsafe(32)
    prefix = f"keyturn-bench-{secrets.token_hex(4)}:"
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEYTURN_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "KEYTURN_ENV": "dev",
            "KEYTURN_DATA_DIR": str(workdir / "keyturn-data"),
            "KEYTURN_DATABASE_URL": database.sqlalchemy_url,
            "KEYTURN_REDIS_URL": options.redis,
            "KEYTURN_REDIS_PREFIX": prefix,
            "KEYTURN_SECRET_KEY": secret_key,
            "KEYTURN_WORKERS": str(options.workers),
            "KEYTURN_HASH_WORKERS": str(options.hash_threads),
            "KEYTURN_LIMIT_IP_PER_MINUTE": str(IP_CEILING),
            "KEYTURN_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
            "KEYTURN_LOG_LEVEL": "warning",
            "KEYTURN_DOCS_ENABLED": "false",
        }
    )
    return KeyturnSetup(env=env, secret_key=secret_key, redis_prefix=prefix)


def migrate(setup: KeyturnSetup) -> None:
    run_command([KEYTURN, "migrate"], env=setup.env)


def start(setup: KeyturnSetup, workdir: Path, server: str = "uvicorn") -> Managed:
    """``keyturn serve`` (uvicorn), or the same app factory under granian."""
    port = free_port()
    env = {**setup.env, "KEYTURN_HOST": "127.0.0.1", "KEYTURN_PORT": str(port)}
    command = [KEYTURN, "serve"] if server == "uvicorn" else granian_command(env, port)
    process = spawn(f"keyturn-{server}", command, env=env, workdir=workdir, port=port)
    process.wait_ready()
    return process


def granian_command(env: dict[str, str], port: int) -> list[str]:
    """granian on the factory `keyturn serve` gives uvicorn, with uvicorn's settings:
    one HTTP/1 listener, uvloop, the same worker count, no websockets (none exist)."""
    if not GRANIAN.exists():
        print(f"installing {GRANIAN_REQUIREMENT} into the project's .venv (once)", flush=True)
        run_command([sys.executable, "-m", "pip", "install", "--quiet", GRANIAN_REQUIREMENT])
    return [
        str(GRANIAN),
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        env["KEYTURN_WORKERS"],
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        "keyturn.app:create_app_from_env",
    ]


def create_admin(setup: KeyturnSetup, email: str, password: str) -> None:
    run_command(
        [KEYTURN, "users", "create-admin", "--email", email, "--password-stdin"],
        env=setup.env,
        stdin=password + "\n",
    )


async def _delete_prefix(url: str, prefix: str) -> int:
    client = Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


def delete_redis_keys(url: str, prefix: str) -> int:
    """Deletes this run's keys only (SCAN by prefix), never the whole database."""
    return asyncio.run(_delete_prefix(url, prefix))
