"""The ``keyturn`` command line (DESIGN.md section 3a): commands, flags, refusals at start."""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from e2e.processes import LOW_ARGON2, Server, keyturn_env, run_in_process, run_keyturn
from helpers import PASSWORD
from keyturn.cli.main import app
from net import free_port

pytestmark = pytest.mark.slow

ADMIN_CREATED = re.compile(r"admin created: ([0-9a-f-]{36})")
GOOD_SECRET = "e2e-production-secret-0123456789-abcdefgh"


def _admin_id(stdout: str) -> str:
    match = ADMIN_CREATED.search(stdout)
    assert match, stdout
    return str(uuid.UUID(match.group(1)))


def test_help_exits_zero(tmp_path: Path) -> None:
    result = run_keyturn(["--help"], keyturn_env(tmp_path))
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "users"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["serve", "--bogus"],
        ["migrate", "--bogus"],
        ["users", "bogus"],
        ["users", "create-admin", "--email", "a@example.com", "--bogus"],
    ],
    ids=["command", "serve-flag", "migrate-flag", "subcommand", "create-admin-flag"],
)
def test_unknown_commands_and_flags_exit_non_zero(tmp_path: Path, args: list[str]) -> None:
    result = run_keyturn(args, keyturn_env(tmp_path / "data"))
    assert result.returncode != 0
    assert "No such" in result.stderr, result.stderr
    # A refused command never got as far as touching the data dir.
    assert not (tmp_path / "data" / "keyturn.db").exists()


def test_password_is_never_a_flag(tmp_path: Path) -> None:
    env = keyturn_env(tmp_path / "data", LOW_ARGON2)
    attempt = run_keyturn(
        ["users", "create-admin", "--email", "admin@example.com", "--password", PASSWORD], env
    )
    assert attempt.returncode != 0
    assert "No such option" in attempt.stderr
    assert "admin created" not in attempt.stdout
    usage = run_keyturn(["users", "create-admin", "--help"], env)
    assert usage.returncode == 0
    assert re.findall(r"--password[\w-]*", usage.stdout) == ["--password-stdin"]


def test_migrate_creates_the_database_and_is_idempotent(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet
    env = keyturn_env(data_dir)
    first = run_keyturn(["migrate"], env)
    assert first.returncode == 0, first.stderr
    database = data_dir / "keyturn.db"
    assert database.is_file()
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert len(version) == 1
    assert {"users", "sessions", "refresh_tokens", "signing_keys", "audit_events"} <= tables

    second = run_keyturn(["migrate"], env)
    assert second.returncode == 0, second.stderr
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == version


def test_create_admin_from_stdin_then_login_as_admin(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    data_dir = tmp_path / "data"
    env = keyturn_env(data_dir, LOW_ARGON2)
    assert run_keyturn(["migrate"], env).returncode == 0

    created = run_keyturn(
        ["users", "create-admin", "--email", "admin@example.com", "--password-stdin"],
        env,
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    admin_id = _admin_id(created.stdout)
    assert PASSWORD not in created.stdout + created.stderr

    again = run_keyturn(
        ["users", "create-admin", "--email", "ADMIN@example.com", "--password-stdin"],
        env,
        stdin="another strong password 1\n",
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr

    server = start_server(LOW_ARGON2, data_dir=data_dir)
    with server.client() as http:
        login = http.post(
            "/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        tokens = login.json()
    assert tokens["user"]["id"] == admin_id
    assert tokens["user"]["roles"] == ["admin"]
    assert tokens["user"]["email_verified"] is True
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["roles"] == [
        "admin"
    ]
    server.assert_stopped_cleanly()


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("Zq9-xw", "password_too_short"),
        ("x" * 1025, "password_too_long"),
        ("weakadmin-password", "password_contains_email"),
    ],
)
def test_create_admin_refuses_a_weak_password(tmp_path: Path, password: str, code: str) -> None:
    env = keyturn_env(tmp_path / "data", LOW_ARGON2)
    result = run_in_process(
        ["users", "create-admin", "--email", "weakadmin@example.com", "--password-stdin"],
        env,
        stdin=password + "\n",
    )
    assert result.returncode != 0
    assert code in result.stderr, result.stderr
    assert "admin created" not in result.stdout
    assert password not in result.stdout + result.stderr


def test_create_admin_refuses_an_invalid_email(tmp_path: Path) -> None:
    env = keyturn_env(tmp_path / "data", LOW_ARGON2)
    result = run_in_process(
        ["users", "create-admin", "--email", "not-an-address", "--password-stdin"],
        env,
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 1
    assert "invalid_request" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_create_admin_prompts_without_password_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    # CliRunner's stdin is no terminal; a person at one is what this test stands for.
    monkeypatch.setattr("keyturn.cli.users.stdin_is_terminal", lambda: True)
    runner = CliRunner()
    env = {"KEYTURN_DATA_DIR": str(tmp_path / "data"), **LOW_ARGON2}
    migrated = runner.invoke(app, ["migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output

    mismatch = runner.invoke(
        app,
        ["users", "create-admin", "--email", "prompted@example.com"],
        input=f"{PASSWORD}\nsomething else entirely\n",
        env=env,
    )
    assert mismatch.exit_code != 0
    assert "admin created" not in mismatch.output

    result = runner.invoke(
        app,
        ["users", "create-admin", "--email", "prompted@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert "Repeat" in result.output
    _admin_id(result.output)
    assert PASSWORD not in result.output  # the prompt hides the input


def test_create_admin_before_migrate_migrates_in_dev(tmp_path: Path) -> None:
    env = keyturn_env(tmp_path / "data", LOW_ARGON2)
    result = run_keyturn(
        ["users", "create-admin", "--email", "early@example.com", "--password-stdin"],
        env,
        stdin=PASSWORD + "\n",
    )
    output = result.stdout + result.stderr
    assert "$argon2" not in output
    assert "Traceback" not in output
    # Dev mode brings the schema up itself, as `keyturn serve` does.
    assert result.returncode == 0, output
    _admin_id(result.stdout)


# Production refusals: each case is valid except for the one problem it names.
PRODUCTION_OK = {
    "KEYTURN_ENV": "production",
    "KEYTURN_SECRET_KEY": GOOD_SECRET,
    "KEYTURN_ISSUER": "https://auth.example.com",
    "KEYTURN_SMTP_URL": "smtp://127.0.0.1:1",
}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KEYTURN_SECRET_KEY": ""}, "KEYTURN_SECRET_KEY"),
        ({"KEYTURN_SECRET_KEY": "too-short-secret"}, "KEYTURN_SECRET_KEY"),
        ({"KEYTURN_ISSUER": "http://auth.example.com"}, "https KEYTURN_ISSUER"),
        ({"KEYTURN_ARGON2_MEMORY_KIB": "19455"}, "argon2"),
        ({"KEYTURN_ARGON2_TIME_COST": "1"}, "argon2"),
        ({"KEYTURN_WORKERS": "2"}, "KEYTURN_REDIS_URL"),
    ],
    ids=["no-secret", "short-secret", "http-issuer", "argon2-memory", "argon2-time", "workers"],
)
def test_production_refuses_unsafe_settings_at_start(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    port = free_port()
    settings = {**PRODUCTION_OK, **env, "KEYTURN_PORT": str(port)}
    settings = {name: value for name, value in settings.items() if value}
    result = run_keyturn(["serve"], keyturn_env(tmp_path / "data", settings))
    assert result.returncode != 0
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KEYTURN_TRUSTED_PROXIES": "10.0.0.1,not-an-ip"}, "'not-an-ip'"),
        ({"KEYTURN_CORS_ORIGINS": "*"}, "KEYTURN_CORS_ORIGINS refuses '*'"),
    ],
    ids=["trusted-proxies", "cors-origins"],
)
def test_edge_settings_are_refused_in_one_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """The edge checks these when the app is built; the refusal still reads like every
    other one (the production guide quotes it), not a traceback from a worker."""
    result = run_keyturn(["serve"], keyturn_env(tmp_path / "data", env))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "configuration refused: " in result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_several_workers_without_redis_are_refused_in_dev(tmp_path: Path) -> None:
    result = run_keyturn(
        ["serve", "--workers", "2", "--port", str(free_port())], keyturn_env(tmp_path / "data")
    )
    assert result.returncode != 0
    assert "KEYTURN_REDIS_URL" in result.stderr, result.stderr
    env_result = run_keyturn(
        ["serve"], keyturn_env(tmp_path / "data", {"KEYTURN_WORKERS": "2", "KEYTURN_PORT": "1"})
    )
    assert env_result.returncode != 0
    assert "KEYTURN_REDIS_URL" in env_result.stderr, env_result.stderr


def test_production_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = run_keyturn(
        ["serve"],
        keyturn_env(tmp_path / "data", {**PRODUCTION_OK, "KEYTURN_PORT": str(free_port())}),
    )
    assert result.returncode != 0
    assert "keyturn migrate" in result.stderr, result.stderr
