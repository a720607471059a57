"""Which mail each account event sends, with its links and the per-address limit."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from keyturn.errors import RateLimited
from keyturn.security.digests import Digester
from keyturn.security.networks import ip_limit_key
from keyturn.services.accounts.credential_revocation import Revoked
from keyturn.services.accounts.ports import RateLimiter
from keyturn.services.outbox import MailOutbox
from keyturn.services.ports import UnitOfWork

MAIL_WINDOW_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class LinkTemplates:
    """Where mail links point; ``{token}`` is replaced (hosted pages or the app's own)."""

    verify_email: str
    reset_password: str
    confirm_email: str
    login: str
    forgot_password: str


def mask_email(email: str) -> str:
    """``a***@example.com``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


class AccountMail:
    """Queues account mails through the outbox; limits mails per address and hour."""

    def __init__(
        self,
        *,
        outbox: MailOutbox,
        links: LinkTemplates,
        limiter: RateLimiter,
        address_digester: Digester,
        per_address_per_hour: int,
        per_address_all_networks_per_hour: int,
        ipv6_prefix: int,
    ) -> None:
        self.outbox = outbox
        self._links = links
        self._limiter = limiter
        self._digester = address_digester
        self._limit = per_address_per_hour
        self._ceiling = per_address_all_networks_per_hour
        self._ipv6_prefix = ipv6_prefix

    def link(self, template: str, token: str = "") -> str:
        return template.replace("{token}", quote(token, safe=""))

    @property
    def links(self) -> LinkTemplates:
        return self._links

    async def allow(self, email: str, ip: str | None, *, silent: bool = False) -> bool:
        """Counts one mail request for ``email`` from ``ip`` (account or not).

        Counted per address and requesting network (issue 12 finding 8): an attacker who
        exhausts an address's budget from his network leaves the owner's network its own,
        so a lock-out never also blocks recovery. The per-address ceiling across networks
        is generous and only stops mail-bombing from many networks at once.

        Raises ``RateLimited`` over a limit unless ``silent`` (then returns False), for
        routes whose answer must not change with the address (signup).
        """
        address = "mail:" + self._digester.digest(email)
        # A full ceiling refuses before anything is counted (a refused request counts
        # nowhere); then the network's own budget, then the ceiling takes the hit. Only
        # requests within their network's budget reach the ceiling, so one network's
        # excess cannot fill it.
        decision = await self._limiter.peek(
            address, limit=self._ceiling, window_seconds=MAIL_WINDOW_SECONDS
        )
        if decision.allowed:
            # The network is keyed like Throttle's (an IPv6 client by its prefix).
            network = ip_limit_key(ip, self._ipv6_prefix)
            decision = await self._limiter.hit(
                f"{address}:{network}", limit=self._limit, window_seconds=MAIL_WINDOW_SECONDS
            )
        if decision.allowed:
            decision = await self._limiter.hit(
                address, limit=self._ceiling, window_seconds=MAIL_WINDOW_SECONDS
            )
        if decision.allowed:
            return True
        if silent:
            return False
        raise RateLimited(
            "Too many mails requested for this address; try again later.",
            retry_after=decision.retry_after,
            limit=decision.limit,
            reset_after=decision.reset_after,
        )

    async def password_changed(self, uow: UnitOfWork, *, to: str, revoked: Revoked) -> None:
        """Queues the "password changed" notice: what was revoked and where to recover."""
        link_reset = self.link(self._links.forgot_password)
        await self.send(
            uow, "password_changed", to=to, **revoked.mail_context(), link_reset=link_reset
        )

    async def send(self, uow: UnitOfWork, kind: str, *, to: str, **context: str) -> None:
        await self.outbox.enqueue(uow, kind, to=to, **context)
