"""``keyturn serve`` reads its secrets from files (issue 16: ``KEYTURN_<NAME>_FILE``, the way
Docker and Kubernetes mount secrets), and refuses a secret given both ways.

ASVS v5.0.0-13.3.1 (secrets come from a secret store, not the code or the command line).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2, keyturn_env, run_keyturn
from helpers import PASSWORD, new_email

pytestmark = pytest.mark.slow

KEY = "file-mounted-secret-key-" + "x" * 24


def secret_file(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content + "\n", encoding="utf-8")
    path.chmod(0o400)
    return path


def test_serve_takes_its_key_and_database_from_files(
    start_server: StartServer, tmp_path: Path
) -> None:
    mounted = tmp_path / "run-secrets"
    mounted.mkdir()
    database = tmp_path / "elsewhere" / "keyturn.db"
    database.parent.mkdir()
    server = start_server(
        {
            "KEYTURN_SECRET_KEY_FILE": str(secret_file(mounted, "secret_key", KEY)),
            "KEYTURN_DATABASE_URL_FILE": str(
                secret_file(mounted, "database_url", f"sqlite+aiosqlite:///{database}")
            ),
            **LOW_ARGON2,
        }
    )
    email = new_email()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        assert (
            http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code
            == 202
        )
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["access_token"]
    # The key and the database came from the files: dev mode generated no key of its own
    # and put no database into the data dir.
    assert database.stat().st_size > 0
    assert not (server.data_dir / "secret_key").exists()
    assert not (server.data_dir / "keyturn.db").exists()
    assert KEY not in server.output()


def test_a_secret_given_twice_refuses_to_start(tmp_path: Path) -> None:
    env = keyturn_env(
        tmp_path / "data",
        {
            "KEYTURN_SECRET_KEY": KEY,
            "KEYTURN_SECRET_KEY_FILE": str(secret_file(tmp_path, "secret_key", KEY)),
        },
    )
    result = run_keyturn(["serve"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "set KEYTURN_SECRET_KEY or KEYTURN_SECRET_KEY_FILE, not both" in result.stderr
    assert KEY not in result.stdout + result.stderr
