"""Builds the accounts services from the settings and the adapters ``keyturn.app`` made."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.config import Settings
from keyturn.security.digests import Digester, KeyRing
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.access_tokens import AccessTokenService
from keyturn.services.accounts.account_requests import AccountRequests, TokenLifetimes
from keyturn.services.accounts.authentication import AuthService
from keyturn.services.accounts.credential_rules import PasswordPolicy
from keyturn.services.accounts.lifecycle import AccountService
from keyturn.services.accounts.lifecycle_mail import AccountMail, LinkTemplates
from keyturn.services.accounts.lockout import CredentialGuard
from keyturn.services.accounts.one_time_tokens import OneTimeTokens
from keyturn.services.accounts.ports import RateLimiter, RevocationStore, SignInStore
from keyturn.services.accounts.profile import UserService
from keyturn.services.accounts.recent_sign_in import RecentSignIn
from keyturn.services.accounts.second_factor import MfaGate
from keyturn.services.accounts.sessions import SessionService
from keyturn.services.accounts.signup import SignupService
from keyturn.services.accounts.throttle import Limits, Throttle
from keyturn.services.accounts.user_cache import UserCache
from keyturn.services.outbox import MailOutbox
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys import KeyManager


@dataclass(frozen=True, slots=True)
class AccountServices:
    access_tokens: AccessTokenService
    guard: CredentialGuard
    mail: AccountMail
    tokens: OneTimeTokens
    auth: AuthService
    signup: SignupService
    sessions: SessionService
    users: UserService
    account: AccountService
    account_requests: AccountRequests
    recent_sign_in: RecentSignIn


def _links(settings: Settings) -> LinkTemplates:
    def fill(template: str) -> str:
        return template.replace("{issuer}", settings.issuer)

    return LinkTemplates(
        verify_email=fill(settings.link_verify_email),
        reset_password=fill(settings.link_reset_password),
        confirm_email=fill(settings.link_confirm_email),
        login=f"{settings.issuer}/ui/login",
        forgot_password=f"{settings.issuer}/ui/forgot",
    )


def _mail(
    settings: Settings, *, outbox: MailOutbox, limiter: RateLimiter, key_ring: KeyRing
) -> AccountMail:
    return AccountMail(
        outbox=outbox,
        links=_links(settings),
        limiter=limiter,
        address_digester=Digester(key_ring, "mail-address"),
        per_address_per_hour=settings.limit_mails_per_address_per_hour,
        per_address_all_networks_per_hour=settings.limit_mails_per_address_all_networks_per_hour,
        ipv6_prefix=settings.limit_ipv6_prefix,
    )


def _guard(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    limiter: RateLimiter,
    key_ring: KeyRing,
    mail: AccountMail,
) -> CredentialGuard:
    limits = Limits(
        failures_per_account_ip=settings.limit_failures_per_account_ip,
        failures_per_account=settings.limit_failures_per_account,
        ip_per_minute=settings.limit_ip_per_minute,
        signups_per_ip_per_hour=settings.limit_signups_per_ip_per_hour,
        ipv6_prefix=settings.limit_ipv6_prefix,
    )
    throttle = Throttle(
        limiter=limiter, digester=Digester(key_ring, "throttle-account"), limits=limits
    )
    return CredentialGuard(
        throttle=throttle, uow_factory=uow_factory, mail=mail, lock_seconds=settings.lock_seconds
    )


def _requests(
    settings: Settings, *, uow_factory: UnitOfWorkFactory, tokens: OneTimeTokens, mail: AccountMail
) -> AccountRequests:
    lifetimes = TokenLifetimes(
        verify_email=settings.verify_email_ttl,
        reset_password=settings.reset_password_ttl,
        email_change=settings.email_change_ttl,
    )
    return AccountRequests(uow_factory=uow_factory, tokens=tokens, mail=mail, lifetimes=lifetimes)


def _access_tokens(
    settings: Settings,
    *,
    keys: KeyManager,
    revocations: RevocationStore,
    uow_factory: UnitOfWorkFactory,
) -> AccessTokenService:
    return AccessTokenService(
        keys=keys,
        revocations=revocations,
        uow_factory=uow_factory,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_token_ttl,
    )


def _auth(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    sign_in: SignInStore,
    hash_pool: HashPool,
    access_tokens: AccessTokenService,
    key_ring: KeyRing,
    policy: PasswordPolicy,
    guard: CredentialGuard,
    tokens: OneTimeTokens,
) -> AuthService:
    return AuthService(
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        sign_in=sign_in,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        key_ring=key_ring,
        policy=policy,
        refresh_ttl=settings.refresh_token_ttl,
        idle_ttl=settings.session_idle_ttl,
        reuse_grace=settings.refresh_reuse_grace,
        require_verified_email=settings.email_verification_required,
        guard=guard,
        second_factor=MfaGate(
            uow_factory=uow_factory,
            tokens=tokens,
            required_roles=frozenset(settings.mfa_required_roles),
        ),
    )


def _account(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    hash_pool: HashPool,
    access_tokens: AccessTokenService,
    tokens: OneTimeTokens,
    mail: AccountMail,
    policy: PasswordPolicy,
    guard: CredentialGuard,
) -> tuple[AccountService, AccountRequests, RecentSignIn]:
    """The account lifecycle service, with the requests and recent sign-in it needs."""
    requests = _requests(settings, uow_factory=uow_factory, tokens=tokens, mail=mail)
    recent_sign_in = RecentSignIn(
        read_uow_factory=read_uow_factory, max_age=settings.reauthentication_max_age
    )
    account = AccountService(
        uow_factory=uow_factory,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        tokens=tokens,
        mail=mail,
        policy=policy,
        guard=guard,
        recent_sign_in=recent_sign_in,
        requests=requests,
        read_uow_factory=read_uow_factory,
    )
    return account, requests, recent_sign_in


def build_accounts(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory,
    read_uow_factory: UnitOfWorkFactory,
    sign_in: SignInStore,
    key_ring: KeyRing,
    keys: KeyManager,
    outbox: MailOutbox,
    limiter: RateLimiter,
    revocations: RevocationStore,
    hash_pool: HashPool,
    profiles: UserCache,
) -> AccountServices:
    access_tokens = _access_tokens(
        settings, keys=keys, revocations=revocations, uow_factory=uow_factory
    )
    policy = PasswordPolicy(settings.password_min_length, settings.password_max_length)
    mail = _mail(settings, outbox=outbox, limiter=limiter, key_ring=key_ring)
    guard = _guard(settings, uow_factory=uow_factory, limiter=limiter, key_ring=key_ring, mail=mail)
    tokens = OneTimeTokens(key_ring=key_ring)
    auth = _auth(
        settings,
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        sign_in=sign_in,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        key_ring=key_ring,
        policy=policy,
        guard=guard,
        tokens=tokens,
    )
    account, requests, recent_sign_in = _account(
        settings,
        uow_factory=uow_factory,
        read_uow_factory=read_uow_factory,
        hash_pool=hash_pool,
        access_tokens=access_tokens,
        tokens=tokens,
        mail=mail,
        policy=policy,
        guard=guard,
    )
    return AccountServices(
        access_tokens=access_tokens,
        guard=guard,
        mail=mail,
        tokens=tokens,
        auth=auth,
        signup=SignupService(
            uow_factory=uow_factory,
            hash_pool=hash_pool,
            policy=policy,
            tokens=tokens,
            mail=mail,
            verify_ttl=settings.verify_email_ttl,
            guard=guard,
        ),
        sessions=SessionService(
            uow_factory=uow_factory,
            read_uow_factory=read_uow_factory,
            access_tokens=access_tokens,
            idle_ttl=settings.session_idle_ttl,
        ),
        users=UserService(
            uow_factory=uow_factory,
            hash_pool=hash_pool,
            access_tokens=access_tokens,
            policy=policy,
            mail=mail,
            guard=guard,
            read_uow_factory=read_uow_factory,
            profiles=profiles,
        ),
        account=account,
        account_requests=requests,
        recent_sign_in=recent_sign_in,
    )
