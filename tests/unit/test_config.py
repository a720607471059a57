"""``keyturn.config``: defaults of DESIGN.md section 3a, environment parsing, and the
refusals that keep an unsafe production configuration from starting.

ASVS v5.0.0-13.1.x (documented, safe configuration), v5.0.0-11.4.2 (password hashing
parameters at the OWASP minimum in production), v5.0.0-12.1.x/12.2.x (TLS; an https
issuer), v5.0.0-13.3.x (secrets managed, never a default value in production).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from keyturn.config import ConfigError, Settings, load_settings, validate

GOOD_KEY = "k" * 40
OTHER_KEY = "o" * 48


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KEYTURN_* variable of the caller's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("KEYTURN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def production(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "data_dir": tmp_path,
        "secret_key": [GOOD_KEY],
        "issuer": "https://id.example.com",
        "database_url": "postgresql+asyncpg://keyturn@db.example.com/keyturn",
        "smtp_url": "smtps://mailer:secret@smtp.example.com",
    }
    values.update(overrides)
    return load_settings(**values)


# ---------------------------------------------------------------------------------------
# Defaults (DESIGN.md section 3a)


def test_defaults_match_the_design(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.env == "dev"
    assert settings.is_production is False
    assert settings.access_token_ttl == 600
    assert settings.refresh_token_ttl == 2_592_000
    assert settings.session_idle_ttl == 604_800
    assert settings.refresh_reuse_grace == 10
    assert settings.max_body_bytes == 65536
    assert settings.argon2_memory_kib == 19456
    assert settings.argon2_time_cost == 2
    assert settings.hash_queue == 64
    assert settings.hash_workers == (os.cpu_count() or 1)
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.audience == "keyturn"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.redis_url is None
    assert settings.tls_cert_file is None
    assert settings.tls_key_file is None
    assert settings.password_min_length == 10
    assert settings.password_max_length == 1024
    assert settings.signing_alg == "ES256"
    assert settings.id_token_algs == ["RS256", "ES256"]
    assert settings.signing_algorithms == ("ES256", "RS256")
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'keyturn.db'}"


def test_data_dir_defaults_to_var(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.data_dir == Path("./var")
    assert settings.database_url == f"sqlite+aiosqlite:///{Path('var') / 'keyturn.db'}"
    assert (tmp_path / "var" / "secret_key").is_file()


def test_require_verified_email_default_depends_on_env(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).email_verification_required is False
    assert production(tmp_path).email_verification_required is True
    # An explicit choice wins in either mode.
    assert production(tmp_path, require_verified_email=False).email_verification_required is False
    dev = load_settings(data_dir=tmp_path, require_verified_email=True)
    assert dev.email_verification_required is True


def test_docs_are_off_in_production_by_default(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).show_docs is True
    assert production(tmp_path).show_docs is False
    assert production(tmp_path, docs_enabled=True).show_docs is True
    assert load_settings(data_dir=tmp_path, docs_enabled=False).show_docs is False


# ---------------------------------------------------------------------------------------
# Environment parsing


def test_secret_key_ring_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_SECRET_KEY", f" {GOOD_KEY} ,{OTHER_KEY},, ")
    settings = load_settings()
    assert settings.secret_key == [GOOD_KEY, OTHER_KEY]  # newest first, blanks dropped
    assert not (tmp_path / "secret_key").exists()  # a configured key is never replaced


def test_single_secret_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_SECRET_KEY", GOOD_KEY)
    assert load_settings().secret_key == [GOOD_KEY]


def test_scalar_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "KEYTURN_DATA_DIR": str(tmp_path),
        "KEYTURN_ACCESS_TOKEN_TTL": "900",
        "KEYTURN_REFRESH_REUSE_GRACE": "0",
        "KEYTURN_MAX_BODY_BYTES": "131072",
        "KEYTURN_PORT": "9000",
        "KEYTURN_ISSUER": "http://localhost:9000/",
        "KEYTURN_AUDIENCE": "my-api",
        "KEYTURN_REQUIRE_VERIFIED_EMAIL": "true",
        "KEYTURN_DATABASE_URL": "postgresql+asyncpg://u@h/db",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.access_token_ttl == 900
    assert settings.refresh_reuse_grace == 0
    assert settings.max_body_bytes == 131072
    assert settings.port == 9000
    assert settings.issuer == "http://localhost:9000"  # no trailing slash in any iss
    assert settings.audience == "my-api"
    assert settings.email_verification_required is True
    assert settings.database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYTURN_ENV", "staging"),
        ("KEYTURN_PORT", "0"),
        ("KEYTURN_PORT", "70000"),
        ("KEYTURN_PORT", "eighty"),
        ("KEYTURN_ACCESS_TOKEN_TTL", "5"),
        ("KEYTURN_REFRESH_REUSE_GRACE", "-1"),
        ("KEYTURN_MAX_BODY_BYTES", "10"),
        ("KEYTURN_HASH_WORKERS", "0"),
        ("KEYTURN_HASH_QUEUE", "-1"),
        ("KEYTURN_SIGNING_ALG", "HS256"),
        ("KEYTURN_SIGNING_ALG", "none"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load_settings()


# ---------------------------------------------------------------------------------------
# Dev secret key


def test_dev_mode_generates_the_secret_key_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    first = load_settings(data_dir=data_dir)
    key_file = data_dir / "secret_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) == 1
    assert len(first.secret_key[0]) >= 32
    assert key_file.read_text().strip() == first.secret_key[0]
    second = load_settings(data_dir=data_dir)
    assert second.secret_key == first.secret_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_dev_secret_keys_differ_between_data_dirs(tmp_path: Path) -> None:
    one = load_settings(data_dir=tmp_path / "one").secret_key
    two = load_settings(data_dir=tmp_path / "two").secret_key
    assert one != two


def test_production_never_generates_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEYTURN_SECRET_KEY"):
        production(tmp_path, secret_key=[])
    assert not (tmp_path / "secret_key").exists()


# ---------------------------------------------------------------------------------------
# Refusals


def test_good_production_settings_pass(tmp_path: Path) -> None:
    settings = production(tmp_path)
    assert settings.is_production
    validate(settings)
    clustered = production(
        tmp_path,
        workers=4,
        redis_url="redis://cache.example.com:6379/0",
        secret_key=[GOOD_KEY, OTHER_KEY],
        argon2_memory_kib=65536,
        argon2_time_cost=3,
        tls_cert_file=tmp_path / "cert.pem",
        tls_key_file=tmp_path / "key.pem",
    )
    assert clustered.workers == 4


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"secret_key": []}, "KEYTURN_SECRET_KEY"),
        ({"secret_key": ["too-short"]}, "KEYTURN_SECRET_KEY"),
        ({"secret_key": [GOOD_KEY, "x" * 31]}, "KEYTURN_SECRET_KEY"),
        ({"issuer": "http://id.example.com"}, "KEYTURN_ISSUER"),
        ({"issuer": "id.example.com"}, "KEYTURN_ISSUER"),
        ({"argon2_memory_kib": 19455}, "argon2"),
        ({"argon2_memory_kib": 1024}, "argon2"),
        ({"argon2_time_cost": 1}, "argon2"),
        ({"workers": 2}, "KEYTURN_REDIS_URL"),
        ({"tls_cert_file": "/etc/cert.pem"}, "KEYTURN_TLS_KEY_FILE"),
        ({"tls_key_file": "/etc/key.pem"}, "KEYTURN_TLS_CERT_FILE"),
        (
            {
                "workers": 2,
                "redis_url": "redis://r:6379/0",
                "database_url": "sqlite+aiosqlite:///x.db",
            },
            "PostgreSQL",
        ),
        ({"smtp_url": None}, "KEYTURN_SMTP_URL"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_production_refuses_unsafe_values(
    tmp_path: Path, overrides: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        production(tmp_path, **overrides)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"workers": 2}, "KEYTURN_REDIS_URL"),
        ({"secret_key": ["short"]}, "KEYTURN_SECRET_KEY"),
        ({"tls_cert_file": "/etc/cert.pem"}, "KEYTURN_TLS_KEY_FILE"),
        ({"password_min_length": 64, "password_max_length": 64}, None),
        ({"password_min_length": 60, "password_max_length": 64}, None),
    ],
)
def test_dev_refuses_what_is_never_safe(
    tmp_path: Path, overrides: dict[str, Any], names: str | None
) -> None:
    if names is None:
        load_settings(data_dir=tmp_path, **overrides)  # a consistent length range is fine
        return
    with pytest.raises(ConfigError, match=names):
        load_settings(data_dir=tmp_path, **overrides)


def test_dev_allows_cheap_hashing_and_http(tmp_path: Path) -> None:
    """Tests and local runs may lower the hash cost; only production refuses it."""
    settings = load_settings(data_dir=tmp_path, argon2_memory_kib=1024, argon2_time_cost=1)
    assert settings.argon2_memory_kib == 1024
    assert settings.issuer.startswith("http://")


def test_dev_with_several_workers_and_redis_starts(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, workers=2, redis_url="redis://127.0.0.1:6379/0")
    assert settings.workers == 2


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """An operator fixes a bad configuration in one round, not one error per restart."""
    with pytest.raises(ConfigError) as caught:
        production(tmp_path, secret_key=[], issuer="http://x", argon2_time_cost=1, workers=2)
    message = str(caught.value)
    for fragment in ("KEYTURN_SECRET_KEY", "KEYTURN_ISSUER", "argon2", "KEYTURN_REDIS_URL"):
        assert fragment in message


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.env = "production"  # type: ignore[misc]


# --- signing algorithms: one key chain per algorithm ------------------------------------


def test_id_token_algs_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_SIGNING_ALG", "EdDSA")
    monkeypatch.setenv("KEYTURN_ID_TOKEN_ALGS", " RS256 ,EdDSA,, ")
    settings = load_settings()
    assert settings.id_token_algs == ["RS256", "EdDSA"]
    # The access-token algorithm first, then the ID-token ones; each once.
    assert settings.signing_algorithms == ("EdDSA", "RS256")


@pytest.mark.parametrize("algs", ["ES256", "EdDSA,ES256", "rs256", ""])
def test_id_token_algs_without_rs256_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, algs: str
) -> None:
    """OpenID Connect Core 1.0 section 15.1: an OP must support RS256 for ID Tokens."""
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYTURN_ID_TOKEN_ALGS", algs)
    with pytest.raises(ConfigError, match=r"KEYTURN_ID_TOKEN_ALGS must include RS256"):
        load_settings()


@pytest.mark.parametrize("bad", ["HS256", "none", "PS256", "rs256"])
def test_unsupported_id_token_algs_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=rf"KEYTURN_ID_TOKEN_ALGS: unsupported '{bad}'"):
        load_settings(data_dir=tmp_path, id_token_algs=["RS256", bad])


@pytest.mark.parametrize("bad", ["HS256", "none", "RS512"])
def test_unsupported_access_token_alg_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError, match="signing_alg"):
        load_settings(data_dir=tmp_path, signing_alg=bad)
