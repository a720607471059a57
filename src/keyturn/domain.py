"""Domain objects shared by services and repositories (plain dataclasses, no ORM)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

# Every user holds these self-service scopes (DESIGN.md section 3).
SELF_SERVICE_SCOPES: tuple[str, ...] = ("me:read", "me:write", "sessions:read", "sessions:write")
ADMIN_ROLE = "admin"
# token_endpoint_auth_method of a public OAuth client (RFC 7591 section 2): no secret.
PUBLIC_CLIENT_AUTH_METHOD = "none"
# OpenID Connect Registration 1.0 section 2: a client's ID Token algorithm unless it
# registered another (id_token_signed_response_alg).
DEFAULT_SIGNING_ALG_FOR_ID = "RS256"
# Every permission an admin route can require (DESIGN.md section 3, "Admin").
PERMISSIONS: tuple[str, ...] = (
    "users:read",
    "users:write",
    "roles:write",
    "clients:write",
    "audit:read",
    "keys:write",
)


# The two kinds of account lock (issue 12, finding 2): the throttle's silent, expiring lock,
# which the owner's password reset may lift, and an administrator's, which only an
# administrator lifts.
LOCK_AUTOMATIC: Final = "automatic"
LOCK_ADMINISTRATIVE: Final = "administrative"
LockKind = Literal["automatic", "administrative"]


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    email: str
    email_verified: bool
    name: str | None
    password_hash: str | None
    created_at: datetime
    roles: tuple[str, ...] = ()
    disabled: bool = False
    locked_until: datetime | None = None
    lock_count: int = 0
    # Bumped by every "end all sessions"; a new session must be opened under the epoch
    # the credential check read (issue 12 finding 20).
    session_epoch: int = 0
    # LOCK_AUTOMATIC or LOCK_ADMINISTRATIVE while a lock is (or was last) set.
    lock_kind: str | None = None

    def locked(self, now: datetime) -> bool:
        # An administrator's lock holds until an administrator lifts it, whatever the date.
        if self.lock_kind == LOCK_ADMINISTRATIVE:
            return True
        return self.locked_until is not None and now < self.locked_until

    def active_lock(self, now: datetime) -> LockKind | None:
        """The kind of the lock in force at ``now``, or None."""
        if not self.locked(now):
            return None
        return LOCK_ADMINISTRATIVE if self.admin_locked() else LOCK_AUTOMATIC

    def admin_locked(self) -> bool:
        return self.lock_kind == LOCK_ADMINISTRATIVE


@dataclass(frozen=True, slots=True)
class Role:
    id: uuid.UUID
    name: str
    description: str
    permissions: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    auth_time: datetime
    amr: tuple[str, ...]
    ip: str | None
    user_agent: str | None
    revoked_at: datetime | None = None
    # An OAuth grant (RFC 6749 section 4.1): the client and the granted scope; None for
    # first-party and browser sessions.
    client_id: str | None = None
    scope: str | None = None
    consent_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """An issued authorization code's record (RFC 6749 section 4.1.2); never the code."""

    id: uuid.UUID
    client_id: str
    user_id: uuid.UUID
    browser_session_id: uuid.UUID
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    auth_time: datetime
    amr: tuple[str, ...]
    acr: str | None
    consent_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    issued_session_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    """What a user allowed a client: ``scope`` is a sorted, space-joined set."""

    id: uuid.UUID
    user_id: uuid.UUID
    client_id: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None

    def covers(self, scopes: frozenset[str]) -> bool:
        return self.revoked_at is None and scopes <= frozenset(self.scope.split())


@dataclass(frozen=True, slots=True)
class ConsentListing:
    """A consent as its user sees it: with the name of the client it was given to."""

    consent: Consent
    client_name: str


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: uuid.UUID
    session_id: uuid.UUID
    parent_id: uuid.UUID | None
    generation: int
    created_at: datetime
    rotated_at: datetime | None


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    kid: str
    alg: str
    state: str
    private_key_encrypted: bytes
    public_jwk: dict[str, str]
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class OneTimeToken:
    """A single-use token's record (the token itself is never stored)."""

    id: uuid.UUID
    user_id: uuid.UUID
    purpose: str
    binding: str | None
    data: dict[str, str]
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    # Wrong codes already spent on it (an MFA challenge allows a few, then dies).
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued mail as the worker sees it (payload still encrypted)."""

    id: uuid.UUID
    message_id: str
    kind: str
    payload: bytes
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    occurred_at: datetime
    type: str
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: dict[str, object]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit event to write (``AuditRepository.record``'s arguments, as one value)."""

    event_type: str
    now: datetime
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: dict[str, object]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    user_id: uuid.UUID | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A personal API key's record (the secret part is never stored, only its digest)."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """An OAuth 2.0 client registration (RFC 7591 section 2 metadata names).

    ``client_id`` is the public identifier (128 random bits, URL-safe); the secret is never
    here, only its keyed digest in the database. ``token_endpoint_auth_method`` ``none``
    marks a public client (RFC 6749 section 2.1): no secret, PKCE always required.
    """

    id: uuid.UUID
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str
    token_endpoint_auth_method: str
    allowed_cors_origins: tuple[str, ...]
    require_pkce: bool
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None = None
    # OpenID Connect Registration 1.0 section 2: RS256 unless the client registered another.
    id_token_signed_response_alg: str = DEFAULT_SIGNING_ALG_FOR_ID
    # Every access token issued to the client at or before this second is refused (a
    # secret rotation with ``revoke_tokens``); None when that never happened.
    tokens_revoked_at: datetime | None = None
    # RFC 7591 section 2: the client's home page, privacy policy and terms of service
    # (https), shown to the user on the consent page; None when not registered.
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == PUBLIC_CLIENT_AUTH_METHOD


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token or a personal API key.

    An API key has no session: ``session_id`` is None and ``api_key_id`` names the key.
    The host operator (``keyturn users ...``, see ``operator_principal``) is no user.
    """

    user_id: uuid.UUID
    session_id: uuid.UUID | None
    scopes: frozenset[str]
    roles: tuple[str, ...]
    claims: dict[str, object] = field(default_factory=dict)
    api_key_id: uuid.UUID | None = None
    operator: bool = False


def operator_principal() -> Principal:
    """The operator at the host's command line: whoever can run ``keyturn`` there already
    holds the database and the secret key, so it acts with every permission (the
    last-administrator rule still applies) and is audited as ``operator.*`` without a user.
    ``user_id`` is the nil UUID, which no account has."""
    return Principal(
        user_id=uuid.UUID(int=0), session_id=None, scopes=frozenset(), roles=(), operator=True
    )


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    user: User
    token_type: str = "Bearer"  # noqa: S105  (a scheme name, not a secret)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request came from (already resolved through the trusted-proxy rules)."""

    ip: str | None = None
    user_agent: str | None = None


def utcnow() -> datetime:
    """The one clock of the domain (time-machine moves it in tests)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class KeptMail:
    """A copy of one sent mail, kept in memory for the dev mailbox (``/ui/dev/mail``).

    ``number`` is the mailbox's own counter (1, 2, ...): the page's address for the mail.
    """

    number: int
    message_id: str
    to: str
    subject: str
    text: str
    html: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one (real or peeked) rate-limit hit.

    Attributes:
        allowed: The hit fits in the window (and, for ``hit``, was recorded).
        limit: Hits allowed per window (``RateLimit-Limit``).
        remaining: Hits left in the window after this one (``RateLimit-Remaining``);
            what is left when refused, which is below ``cost``.
        retry_after: Seconds until this hit would be allowed (``Retry-After``); 0 when
            allowed, at least 1 when refused.
        reset_after: Seconds until the window holds no hit at all (``RateLimit-Reset``).
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: int
    reset_after: int


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a walk of the audit hash chain found: intact, or the first bad row and why."""

    rows: int
    bad_id: int | None = None
    reason: str | None = None
    head_id: int | None = None
    head_hash: str | None = None
    # Rows inserted but not yet chained by the sealer (not covered by the walk).
    unsealed: int = 0
    oldest_unsealed_at: datetime | None = None

    @property
    def intact(self) -> bool:
        return self.bad_id is None


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What an audit prune removed, and the checkpoint row that anchors what remains."""

    deleted: int
    pruned_through_seq: int | None = None
    checkpoint_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditBacklog:
    """The audit rows the sealer has not chained yet: how many, and the oldest one's time."""

    unsealed: int
    oldest_at: datetime | None
