"""One typed Settings object (prefix ``KEYTURN_``), built once in the composition root.

``load_settings()`` is the only entry point: it reads the environment, fills the
derived defaults (database URL and secret key inside the data dir in dev mode) and
refuses unsafe production values before anything starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from keyturn.observability.listener_settings import metrics_listener_problems

# OWASP Password Storage Cheat Sheet, argon2id row "m=19456 (19 MiB), t=2, p=1".
OWASP_ARGON2_MEMORY_KIB = 19456
OWASP_ARGON2_TIME_COST = 2
MIN_SECRET_KEY_CHARS = 32
# Cache-Control max-age of /.well-known/jwks.json: a next key must be published longer.
JWKS_MAX_AGE_SECONDS = 300

# ID-token algorithms; RS256 is mandatory (OpenID Connect Core 1.0 section 15.1, and
# Discovery 1.0 section 3: id_token_signing_alg_values_supported MUST include RS256).
DEFAULT_ID_TOKEN_ALGS = ("RS256", "ES256")
OIDC_REQUIRED_ALG = "RS256"
# The algorithms Keyturn can sign with (security/keys.py SUPPORTED_ALGORITHMS; config
# imports nothing from the lower layers).
SIGNING_ALGORITHMS = ("ES256", "RS256", "EdDSA")

CsvList = Annotated[list[str], NoDecode]

# The settings that hold a credential; each may also come from KEYTURN_<NAME>_FILE.
SECRET_FIELDS = ("secret_key", "database_url", "redis_url", "smtp_url")

log = structlog.get_logger(__name__)

# The data dir holds the dev secret key and the SQLite database (users' password hashes,
# sealed signing keys): readable by the service account only (ASVS v5.0.0-13.3.1).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# SQLite's companions of a database file (https://sqlite.org/tempfiles.html); it creates
# them with the database file's own mode, so a 0600 database keeps them 0600 too.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class ConfigError(ValueError):
    """A setting is missing or unsafe; the process must not start."""


class Settings(BaseSettings):
    """Every ``KEYTURN_*`` setting; names are part of the contract (DESIGN.md 3a)."""

    model_config = SettingsConfigDict(env_prefix="KEYTURN_", extra="ignore", frozen=True)

    env: Literal["dev", "production"] = "dev"
    data_dir: Path = Path("./var")
    database_url: str = ""
    # PostgreSQL connections per worker process (no overflow: a request waits for a free
    # one). Keep workers x pool size below the server's max_connections.
    database_pool_size: int = Field(default=20, ge=1, le=1000)
    # False behind a transaction-mode pooler (PgBouncer): asyncpg then names no statements,
    # which would be missing on the next transaction's server connection.
    database_statement_cache: bool = True
    redis_url: str | None = None
    redis_prefix: str = "keyturn:"
    secret_key: CsvList = Field(default_factory=list)
    # Empty: dev derives http(s)://<host>:<port> of the listener (load_settings);
    # production refuses to start without it.
    issuer: str = ""
    audience: str = "keyturn"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    access_token_ttl: int = Field(default=600, ge=30, le=86400)
    refresh_token_ttl: int = Field(default=2_592_000, ge=60)
    session_idle_ttl: int = Field(default=604_800, ge=60)
    refresh_reuse_grace: int = Field(default=10, ge=0, le=300)
    require_verified_email: bool | None = None
    max_body_bytes: int = Field(default=65536, ge=1024)
    password_min_length: int = Field(default=10, ge=8, le=64)
    password_max_length: int = Field(default=1024, ge=64, le=4096)
    argon2_memory_kib: int = Field(default=OWASP_ARGON2_MEMORY_KIB, ge=8)
    argon2_time_cost: int = Field(default=OWASP_ARGON2_TIME_COST, ge=1)
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    hash_queue: int = Field(default=64, ge=0)
    # The access-token algorithm (and the default signer); ID tokens choose among
    # id_token_algs. The key manager keeps one key chain per algorithm of the union.
    signing_alg: Literal["ES256", "RS256", "EdDSA"] = "ES256"
    id_token_algs: CsvList = Field(default_factory=lambda: list(DEFAULT_ID_TOKEN_ALGS))
    key_cache_seconds: int = Field(default=30, ge=1)
    # Signing-key rotation (services/keys.py); 0 days turns the automatic schedule off.
    key_rotation_days: int = Field(default=30, ge=0, le=3650)
    key_publish_ahead_seconds: int = Field(default=3600, ge=1)
    key_rotation_check_seconds: float = Field(default=300.0, ge=0.01, le=86400)
    # How often a process deletes authorization codes past their retention (a day).
    code_prune_seconds: float = Field(default=3600.0, ge=0.01, le=86400)
    log_level: str = "info"
    # Unset: readable console lines in dev, one JSON object a line in production.
    log_format: Literal["console", "json"] | None = None
    docs_enabled: bool | None = None
    smtp_url: str | None = None
    mail_from: str = "Keyturn <no-reply@localhost>"
    smtp_timeout: float = Field(default=10.0, gt=0, le=120)
    outbox_worker: Literal["inline", "off"] = "inline"
    outbox_poll_seconds: float = Field(default=1.0, ge=0.01, le=60)
    audit_seal_seconds: float = Field(default=1.0, ge=0.01, le=3600)
    # Mails per address from one requesting network (finding 8: an attacker's network cannot
    # use up the owner's recovery), and a generous ceiling per address across all networks
    # against mail-bombing from many networks.
    limit_mails_per_address_per_hour: int = Field(default=5, ge=1)
    limit_mails_per_address_all_networks_per_hour: int = Field(default=50, ge=1)
    limit_failures_per_account_ip: int = Field(default=10, ge=1)
    limit_failures_per_account: int = Field(default=100, ge=1)
    limit_ip_per_minute: int = Field(default=300, ge=1)
    limit_signups_per_ip_per_hour: int = Field(default=30, ge=1)
    # Per-IP limits key an IPv6 client on this prefix (one subscriber holds a /64).
    limit_ipv6_prefix: int = Field(default=64, ge=1, le=128)
    lock_seconds: int = Field(default=900, ge=60)
    # `keyturn serve` refuses a request whose header section is larger (431) or slower to
    # arrive (408/close) than these; a reverse proxy in front usually has its own.
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    header_timeout: float = Field(default=10.0, ge=0.1, le=300)
    cors_origins: CsvList = Field(default_factory=list)
    trusted_proxies: CsvList = Field(default_factory=list)
    audit_retention_days: int = Field(default=365, ge=1)
    verify_email_ttl: int = Field(default=86_400, ge=60)
    reset_password_ttl: int = Field(default=1_800, ge=60)
    email_change_ttl: int = Field(default=86_400, ge=60)
    # How recent a session's sign-in (password or factor) must be for an email change, a
    # factor change, new recovery codes or a new API key (issue 15: 5 minutes): a stolen
    # refresh token or an old session cannot make them.
    reauthentication_max_age: int = Field(default=300, ge=60, le=86_400)
    # Users holding one of these roles must enrol a second factor before they get tokens.
    mfa_required_roles: CsvList = Field(default_factory=list)
    # WebAuthn relying party (issue 15); unset: the issuer's host and origin.
    webauthn_rp_id: str | None = Field(default=None, min_length=1, max_length=253)
    webauthn_origins: CsvList = Field(default_factory=list)
    # User verification (PIN, biometrics) asked of an authenticator as a second factor;
    # a passwordless sign-in always requires it (it is then the only factor).
    webauthn_user_verification: Literal["required", "preferred", "discouraged"] = "preferred"
    # Mail links; {token} is replaced. Point them at your app's pages, or keep the hosted ones.
    link_verify_email: str = "{issuer}/ui/verify?token={token}"
    link_reset_password: str = "{issuer}/ui/reset?token={token}"  # noqa: S105  (a URL template)
    link_confirm_email: str = "{issuer}/ui/email/confirm?token={token}"
    brand_name: str = Field(default="Keyturn", min_length=1, max_length=100)
    brand_logo_url: str | None = None
    brand_color: str = Field(default="#1f6feb", pattern=r"^#[0-9a-fA-F]{6}$")
    # A separate /metrics listener (observability/listener_settings.py); tracing (otel extra).
    metrics_host: str | None = Field(default=None, min_length=1)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    otel_enabled: bool = False

    @field_validator(
        "secret_key",
        "cors_origins",
        "trusted_proxies",
        "id_token_algs",
        "mfa_required_roles",
        "webauthn_origins",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("issuer")
    @classmethod
    def _strip_issuer(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def signing_algorithms(self) -> tuple[str, ...]:
        """Every algorithm with a key chain: the access-token one first, then the ID-token
        ones (deduplicated, in order)."""
        return tuple(dict.fromkeys((self.signing_alg, *self.id_token_algs)))

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def email_verification_required(self) -> bool:
        if self.require_verified_email is None:
            return self.is_production
        return self.require_verified_email

    @property
    def log_renderer(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.is_production else "console"

    @property
    def show_docs(self) -> bool:
        return (not self.is_production) if self.docs_enabled is None else self.docs_enabled


def _too_open(path: Path) -> int:
    """The group/other permission bits of ``path`` (0 when it is private)."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077


def _tighten(path: Path, event: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        path.chmod(mode & ~0o077)
    except PermissionError:
        # Not ours to change (another owner): say so loudly rather than fail to start.
        log.warning(event.replace("tightened", "too_open"), path=str(path), mode=oct(mode))
        return
    log.warning(event, path=str(path), mode=oct(mode), now=oct(mode & ~0o077))


def ensure_private_dir(path: Path, *, tighten: bool) -> None:
    """Creates ``path`` with mode 0700, or checks an existing one.

    An existing directory open to group or others is tightened when ``tighten`` (the data
    dir, which is Keyturn's own) and otherwise only warned about: a database placed in a
    shared directory (``/tmp``) must not have that directory's mode changed under it.
    """
    if not path.exists():
        path.mkdir(parents=True, mode=PRIVATE_DIR_MODE, exist_ok=True)
        return
    if not _too_open(path):
        return
    if tighten:
        _tighten(path, "data_dir_permissions_tightened")
    else:
        log.warning("database_dir_too_open", path=str(path), mode=oct(_too_open(path)))


def ensure_private_database_file(path: Path) -> None:
    """Creates the SQLite file ``path`` with mode 0600 before SQLite does (0644 there), and
    tightens an existing one and its WAL/shared-memory/journal files to owner-only.
    """
    # A zero-length file is an empty SQLite database; an existing one is checked below.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANIONS)):
        if candidate.exists() and _too_open(candidate):
            _tighten(candidate, "database_file_permissions_tightened")


def _dev_secret_key(data_dir: Path) -> str:
    """Reads, or creates once, the dev secret key kept in the data dir (mode 0600)."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    value = secrets.token_urlsafe(32)
    # O_EXCL: two workers starting together must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def validate(settings: Settings) -> None:
    """Refuses settings that must never run (all modes, then production rules)."""
    problems: list[str] = []
    if settings.workers > 1 and not settings.redis_url:
        problems.append("KEYTURN_WORKERS > 1 needs KEYTURN_REDIS_URL (shared limits and deny-list)")
    if any(len(key) < MIN_SECRET_KEY_CHARS for key in settings.secret_key):
        problems.append(
            f"every KEYTURN_SECRET_KEY entry needs at least {MIN_SECRET_KEY_CHARS} chars"
        )
    if settings.brand_logo_url and urlsplit(settings.brand_logo_url).scheme not in (
        "http",
        "https",
    ):
        problems.append("KEYTURN_BRAND_LOGO_URL must be an absolute http(s) URL")
    if not settings.issuer:
        problems.append("KEYTURN_ISSUER is required (the public base URL, e.g. https://id.example)")
    elif urlsplit(settings.issuer).scheme not in ("http", "https"):
        problems.append("KEYTURN_ISSUER must be an absolute http(s) URL")
    if settings.smtp_url:
        smtp = urlsplit(settings.smtp_url)
        # Only the shape here; the mailer parses the rest. Never echo the URL (a password).
        if smtp.scheme not in ("smtp", "smtps") or not smtp.hostname:
            problems.append("KEYTURN_SMTP_URL must look like smtp://host:port or smtps://host")
    if settings.key_publish_ahead_seconds <= JWKS_MAX_AGE_SECONDS + settings.key_cache_seconds:
        # A verifier may hold a JWKS up to max-age old, fetched from a replica whose key
        # cache was up to KEYTURN_KEY_CACHE_SECONDS old: the next key must be out longer.
        problems.append(
            "KEYTURN_KEY_PUBLISH_AHEAD_SECONDS must exceed the JWKS max-age "
            f"({JWKS_MAX_AGE_SECONDS} s) plus KEYTURN_KEY_CACHE_SECONDS"
        )
    unknown = [alg for alg in settings.id_token_algs if alg not in SIGNING_ALGORITHMS]
    if unknown:
        problems.append(
            f"KEYTURN_ID_TOKEN_ALGS: unsupported {', '.join(map(repr, unknown))}; "
            f"choose among {', '.join(SIGNING_ALGORITHMS)}"
        )
    if OIDC_REQUIRED_ALG not in settings.id_token_algs:
        problems.append(
            f"KEYTURN_ID_TOKEN_ALGS must include {OIDC_REQUIRED_ALG} "
            "(OpenID Connect Core 1.0 section 15.1)"
        )
    problems.extend(metrics_listener_problems(settings))
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        problems.append("KEYTURN_TLS_CERT_FILE and KEYTURN_TLS_KEY_FILE go together")
    if settings.is_production:
        if not settings.secret_key:
            problems.append("production needs KEYTURN_SECRET_KEY")
        if settings.issuer and urlsplit(settings.issuer).scheme != "https":
            problems.append("production needs an https KEYTURN_ISSUER")
        if (
            settings.argon2_memory_kib < OWASP_ARGON2_MEMORY_KIB
            or settings.argon2_time_cost < OWASP_ARGON2_TIME_COST
        ):
            problems.append("production refuses argon2 parameters below OWASP (m=19456, t=2)")
        if not settings.smtp_url:
            problems.append("production needs KEYTURN_SMTP_URL (the console mailer is for dev)")
        if settings.database_url.startswith("sqlite") and settings.workers > 1:
            problems.append("production with several workers needs PostgreSQL")
    if problems:
        raise ConfigError("; ".join(problems))


def listener_url(settings: Settings) -> str:
    """``http(s)://<host>:<port>`` of this process's listener (IPv6 in brackets, RFC 3986).

    A wildcard bind address is not a place a browser can go, so it maps to the loopback of
    the same family: the dev issuer must be a URL that works on this machine.
    """
    host = settings.host.strip("[]") or "127.0.0.1"
    with contextlib.suppress(ValueError):  # a name, not an address: used as it is
        address = ipaddress.ip_address(host)
        if address.is_unspecified:
            host = "127.0.0.1" if address.version == 4 else "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{host}:{settings.port}"


def secrets_from_files(environ: Mapping[str, str]) -> dict[str, str]:
    """The secret settings named by ``KEYTURN_<NAME>_FILE`` (Docker and Kubernetes secrets
    are mounted files), read and stripped; both forms of one setting at once are refused."""
    found: dict[str, str] = {}
    for field in SECRET_FIELDS:
        variable = f"KEYTURN_{field.upper()}"
        path = environ.get(f"{variable}_FILE")
        if path is None:
            continue
        if variable in environ:
            raise ConfigError(f"set {variable} or {variable}_FILE, not both")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            # The path and the reason, never the content: it is a secret.
            raise ConfigError(f"{variable}_FILE: cannot read {path} ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:  # its text would quote a byte of the secret
            raise ConfigError(f"{variable}_FILE: {path} is not UTF-8 text") from exc
        if not value:
            raise ConfigError(f"{variable}_FILE: {path} is empty")
        found[field] = value
    return found


def load_settings(**overrides: object) -> Settings:
    """Builds the one Settings object: environment (and secret files), then derived
    defaults, then checks."""
    settings = Settings(**{**secrets_from_files(os.environ), **overrides})  # type: ignore[arg-type]
    if not settings.issuer and not settings.is_production:
        # Dev: tokens, mail links and discovery name the port this process listens on.
        settings = settings.model_copy(update={"issuer": listener_url(settings)})
    derived: dict[str, object] = {}
    if not settings.database_url:
        derived["database_url"] = f"sqlite+aiosqlite:///{settings.data_dir / 'keyturn.db'}"
    if not settings.secret_key and not settings.is_production:
        derived["secret_key"] = []  # read or generated below, once the data dir is private
    if derived:
        # The data dir is about to hold the key and/or the database: owner-only.
        ensure_private_dir(settings.data_dir, tighten=True)
        if "secret_key" in derived:
            derived["secret_key"] = [_dev_secret_key(settings.data_dir)]
        settings = settings.model_copy(update=derived)
    validate(settings)
    return settings
