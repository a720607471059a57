"""Secrets from files (issue 16): every secret setting also reads ``KEYTURN_<NAME>_FILE``,
the way Docker and Kubernetes mount secrets; both forms at once, an unreadable, empty or
non-UTF-8 file refuse to start, naming the path and never the content.

ASVS v5.0.0-13.3.1 (secrets come from a secrets manager, never from code).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyturn.config import ConfigError, load_settings

GOOD_KEY = "k" * 40
OTHER_KEY = "o" * 48


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KEYTURN_* variable of the caller's shell leaks into these tests."""
    for name in [name for name in os.environ if name.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("field", "content", "expected"),
    [
        ("secret_key", f"{GOOD_KEY},{OTHER_KEY}\n", [GOOD_KEY, OTHER_KEY]),
        (
            "database_url",
            "postgresql+asyncpg://k:pw@db/keyturn\n",
            "postgresql+asyncpg://k:pw@db/keyturn",
        ),
        ("redis_url", "redis://:pw@cache:6379/0", "redis://:pw@cache:6379/0"),
        ("smtp_url", "smtp://user:pw@mail:25\n", "smtp://user:pw@mail:25"),
    ],
)
def test_every_secret_setting_reads_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str, content: str, expected: object
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(content, encoding="utf-8")
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(f"KEYTURN_{field.upper()}_FILE", str(secret))
    assert getattr(load_settings(), field) == expected


def test_a_secret_file_and_its_variable_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(GOOD_KEY, encoding="utf-8")
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_SECRET_KEY", OTHER_KEY)
    monkeypatch.setenv("KEYTURN_SECRET_KEY_FILE", str(secret))
    with pytest.raises(ConfigError, match="KEYTURN_SECRET_KEY or KEYTURN_SECRET_KEY_FILE") as no:
        load_settings()
    assert GOOD_KEY not in str(no.value)
    assert OTHER_KEY not in str(no.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file"), ("", "is empty"), (" \n", "is empty"), (b"\xff", "not UTF-8")],
    ids=["missing", "empty", "blank", "binary"],
)
def test_an_unreadable_or_empty_secret_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_bytes(content.encode() if isinstance(content, str) else content)
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_SMTP_URL_FILE", str(secret))
    with pytest.raises(ConfigError, match=f"KEYTURN_SMTP_URL_FILE: .*{secret}.*{reason}"):
        load_settings()


def test_an_explicit_value_wins_over_a_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Overrides (the tests' and the CLI's own) win over the environment, files included."""
    secret = tmp_path / "secret"
    secret.write_text(OTHER_KEY, encoding="utf-8")
    monkeypatch.setenv("KEYTURN_SECRET_KEY_FILE", str(secret))
    assert load_settings(data_dir=tmp_path, secret_key=[GOOD_KEY]).secret_key == [GOOD_KEY]
