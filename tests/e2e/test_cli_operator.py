"""The ``keyturn`` command line as an operator meets it (issue 13 items 3 and 8).

Real processes: ``--version``, help without ``<bool>``, ``migrate`` saying what it applied,
``serve``'s start block and log formats, ``users list|show|lock|unlock|reset-password|
delete`` through the services with ``operator.*`` audit rows and the last-administrator
rule, progress bars only on a terminal, and ``create-admin`` without a terminal.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from e2e.processes import (
    COMMAND_TIMEOUT,
    LOW_ARGON2,
    Server,
    keyturn_env,
    keyturn_executable,
    run_in_process,
    run_keyturn,
    spawn_server,
    wait_healthy,
)
from helpers import PASSWORD, TEST_SECRET
from keyturn.cli.main import app
from keyturn.db.migrate import alembic_config

pytestmark = pytest.mark.slow

ADMIN_CREATED = re.compile(r"admin created: ([0-9a-f-]{36})")
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return keyturn_env(
        tmp_path / "data", {**LOW_ARGON2, "KEYTURN_SECRET_KEY": TEST_SECRET, **extra}
    )


def _create_admin(env: Mapping[str, str], email: str) -> str:
    made = run_keyturn(
        ["users", "create-admin", "--email", email, "--password-stdin"], env, stdin=PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    match = ADMIN_CREATED.search(made.stdout)
    assert match, made.stdout
    return match.group(1)


async def _sql(url: str, statement: str) -> list[Any]:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.fixture(params=["embedded", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A private, empty database: SQLite in the data dir, or one on KEYTURN_TEST_DATABASE_URL
    (the last-administrator rule needs a database no other test adds admins to)."""
    if request.param == "embedded":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'keyturn.db'}"
        return
    server = os.environ.get("KEYTURN_TEST_DATABASE_URL")
    if not server:
        pytest.skip("KEYTURN_TEST_DATABASE_URL is not set")
    name = f"keyturn_cli_{uuid.uuid4().hex[:12]}"
    asyncio.run(_sql(server, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _audit_rows(url: str) -> list[tuple[str, str | None, dict[str, object]]]:
    rows = asyncio.run(_sql(url, "SELECT type, user_id, data FROM audit_events ORDER BY id"))
    return [
        (kind, user_id, data if isinstance(data, dict) else json.loads(data))
        for kind, user_id, data in rows
    ]


@pytest.fixture
def serve_with(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Server]]:
    """``keyturn serve`` with exactly ``env`` (start_server would add the JSON log format)."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        server = spawn_server(tmp_path, env)
        started.append(server)
        wait_healthy(server)
        return server

    yield start
    for server in started:
        server.stop()


def _on_a_terminal(args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Runs ``keyturn args`` with standard error on a pseudo-terminal (stdout a pipe)."""
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(
            [keyturn_executable(), *args],
            env={**env, "COLUMNS": "100"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: the terminal's last writer is gone
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        os.close(leader)
    return process.returncode, b"".join(chunks).decode(errors="replace")


def test_version(tmp_path: Path) -> None:
    result = run_keyturn(["--version"], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"keyturn {version('keyturn')}"


def _commands(command: object, prefix: list[str]) -> list[list[str]]:
    """Every command path under ``command`` (typer's groups carry ``commands``)."""
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, [*prefix, name])
    return found


def test_no_bool_placeholders_in_any_help(tmp_path: Path) -> None:
    runner = CliRunner()
    paths = _commands(typer.main.get_command(app), [])
    assert ["users", "lock"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
    # The flags read as flags, in the real process too.
    rotate = run_keyturn(["keys", "rotate", "--help"], _env(tmp_path))
    assert rotate.returncode == 0
    assert re.search(r"^\s+--force\s+Activate", rotate.stdout, re.M), rotate.stdout


@pytest.mark.parametrize(
    "args",
    [["users", "lock"], ["users", "lock", "x@example.com", "--bogus"], ["--bogus"], ["nope"]],
    ids=["missing-user", "unknown-flag", "unknown-root-flag", "unknown-command"],
)
def test_unknown_commands_flags_and_missing_arguments_exit_non_zero(
    tmp_path: Path, args: list[str]
) -> None:
    result = run_keyturn(args, _env(tmp_path))
    assert result.returncode == 2, result.stdout
    assert "Usage:" in result.stderr


def test_migrate_says_what_it_applied(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = run_keyturn(["migrate"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied 0001..{HEAD}"
    again = run_keyturn(["migrate"], env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"already at {HEAD}"
    for result in (first, again):
        assert "Context impl" not in result.stdout + result.stderr
        assert "Will assume" not in result.stdout + result.stderr


def test_dev_serve_prints_where_things_are_in_console_logs(
    serve_with: Callable[[dict[str, str]], Server], tmp_path: Path
) -> None:
    env = _env(tmp_path)
    del env["KEYTURN_LOG_FORMAT"]  # dev's default
    server = serve_with(env)
    started = server.stderr_path.read_text(encoding="utf-8")
    base = server.base_url
    for place in (f"{base}/v1", f"{base}/docs", f"{base}/ui/signup", f"{base}/ui/dev/mail"):
        assert place in started, started
    assert started.startswith("Keyturn ")
    server.wait_for_output("Application startup complete.")
    lines = [line for line in server.stdout().splitlines() if line.strip()]
    assert lines
    assert not [line for line in lines if line.startswith("{")], lines
    assert any("[info" in line and "started" in line for line in lines), lines
    assert "Context impl" not in server.stdout() + started
    assert server.stop() == 0, server.output()


def test_production_serve_logs_json_without_the_dev_block(
    serve_with: Callable[[dict[str, str]], Server], tmp_path: Path
) -> None:
    env = _env(
        tmp_path,
        KEYTURN_ENV="production",
        KEYTURN_SECRET_KEY="e2e-production-secret-0123456789-abcdefgh",
        KEYTURN_ISSUER="https://auth.example.com",
        KEYTURN_SMTP_URL="smtp://127.0.0.1:1",
        KEYTURN_ARGON2_MEMORY_KIB="19456",
        KEYTURN_ARGON2_TIME_COST="2",
    )
    del env["KEYTURN_LOG_FORMAT"]  # production's default
    assert run_keyturn(["migrate"], env).returncode == 0
    server = serve_with(env)
    server.wait_for_output("Application startup complete.")
    assert "/ui/dev/mail" not in server.output()
    events = [json.loads(line) for line in server.stdout().splitlines() if line.strip()]
    assert any(event["event"] == "started" for event in events), events
    assert server.stop() == 0, server.output()


def test_users_commands_act_through_the_services_as_the_audited_operator(
    tmp_path: Path, database: str
) -> None:
    env = _env(tmp_path, KEYTURN_DATABASE_URL=database)
    first = _create_admin(env, "first@example.com")
    second = _create_admin(env, "second@example.com")

    listed = run_keyturn(["users", "list"], env)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["id", "state", "verified", "roles", "email"]
    assert [row.split()[0] for row in rows[1:]] == [first, second]  # email order
    assert listed.stderr == ""  # no terminal: no progress bar
    only = run_in_process(["users", "list", "--query", "sec", "--limit", "5"], env)
    assert [row.split()[-1] for row in only.stdout.splitlines()[1:]] == ["second@example.com"]

    locked = run_in_process(["users", "lock", "SECOND@example.com"], env)
    assert locked.returncode == 0, locked.stderr
    shown = run_in_process(["users", "show", second], env)
    assert re.search(r"^state:\s+locked$", shown.stdout, re.M), shown.stdout
    # The last administrator who can still act stays: locking the other one is refused.
    refused = run_in_process(["users", "lock", first], env)
    assert refused.returncode == 1
    assert "error (last_admin)" in refused.stderr
    assert "Traceback" not in refused.stderr

    unlocked = run_in_process(["users", "unlock", second], env)
    assert unlocked.returncode == 0, unlocked.stderr
    shown = run_in_process(["users", "show", "second@example.com"], env)
    assert re.search(r"^state:\s+active$", shown.stdout, re.M), shown.stdout

    reset = run_in_process(["users", "reset-password", second], env)
    assert reset.returncode == 0, reset.stderr
    shown = run_in_process(["users", "show", second], env)
    assert re.search(r"^password set:\s+no$", shown.stdout, re.M), shown.stdout

    unconfirmed = subprocess.run(
        [keyturn_executable(), "users", "delete", second],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    deleted = run_in_process(["users", "delete", second, "--yes"], env)
    assert deleted.returncode == 0, deleted.stderr
    assert run_in_process(["users", "show", second], env).returncode == 1
    last = run_in_process(["users", "delete", first, "--yes"], env)
    assert last.returncode == 1
    assert "error (last_admin)" in last.stderr
    missing = run_in_process(["users", "show", "nobody@example.com"], env)
    assert missing.returncode == 1
    assert "error (not_found)" in missing.stderr

    operator_rows = [row for row in _audit_rows(database) if row[0].startswith("operator.")]
    assert [(kind, user_id) for kind, user_id, _ in operator_rows] == [
        ("operator.user_locked", None),
        ("operator.user_unlocked", None),
        ("operator.password_reset", None),
        ("operator.user_deleted", None),
    ]
    assert {data["target_user_id"] for _, _, data in operator_rows} == {second}
    verified = run_in_process(["audit", "verify"], env)
    assert verified.returncode == 0, verified.stderr


def test_long_jobs_show_progress_only_on_a_terminal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _create_admin(env, "watch@example.com")
    for args, description in (
        (["users", "list"], "listing accounts"),
        (["audit", "verify"], "verifying the audit chain"),
        (["secret", "rotate"], "re-encrypting queued mail"),
        (["audit", "prune"], "pruning the audit log"),
    ):
        quiet = run_keyturn(args, env)
        assert quiet.returncode == 0, quiet.stderr
        assert description not in quiet.stderr
        returncode, terminal = _on_a_terminal(args, env)
        assert returncode == 0, terminal
        assert description in terminal, (args, terminal)


def test_create_admin_without_a_terminal_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [keyturn_executable(), "users", "create-admin", "--email", "a@example.com"],
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr
    assert "keyturn users create-admin --email a@example.com --password-stdin" in result.stderr
    assert "Aborted" not in result.stderr
    assert "Warning" not in result.stderr
    assert "admin created" not in result.stdout


def test_delete_asks_a_person_at_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path)
    first = _create_admin(env, "keep@example.com")
    second = _create_admin(env, "ask@example.com")
    for name in [name for name in os.environ if name.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    # CliRunner's stdin is no terminal; a person at one is what this test stands for.
    monkeypatch.setattr("keyturn.cli.users.stdin_is_terminal", lambda: True)
    runner = CliRunner()
    keyturn_vars = {name: value for name, value in env.items() if name.startswith("KEYTURN_")}
    declined = runner.invoke(app, ["users", "delete", second], input="n\n", env=keyturn_vars)
    assert declined.exit_code == 1
    assert "Delete the account" in declined.output
    assert "Aborted" in declined.output
    confirmed = runner.invoke(app, ["users", "delete", second], input="y\n", env=keyturn_vars)
    assert confirmed.exit_code == 0, confirmed.output
    assert "deleted ask@example.com" in confirmed.output
    listed = run_keyturn(["users", "list"], env)
    assert [row.split()[0] for row in listed.stdout.splitlines()[1:]] == [first]
