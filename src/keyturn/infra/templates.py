"""Mail templates: every mail the service sends, as a text and an HTML version.

Each kind has ``mail_templates/<kind>.txt`` (which also defines the ``subject`` and
``reason`` blocks) and ``mail_templates/<kind>.html`` (extends ``base.html``: brand name,
colour and optional logo, inline styles only). Links are built by the caller and passed
in; the templates only show them, so they never need to know the URL layout.

Every mail names the brand and says why it was sent (the ``reason`` block, shown in
both footers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from keyturn.domain_mail import MailMessage

__all__ = ["MAIL_KINDS", "MailTemplates"]


@dataclass(frozen=True, slots=True)
class _Kind:
    required: frozenset[str]
    optional: frozenset[str] = frozenset()


def _kind(*required: str, optional: tuple[str, ...] = ()) -> _Kind:
    return _Kind(frozenset(required), frozenset(optional))


# The context each kind takes. ``token`` is optional: the caller decides whether a mail
# also carries the raw token for API-only clients that paste it.
_KINDS: dict[str, _Kind] = {
    "verify_email": _kind("link", "expires_minutes", optional=("token",)),
    "account_exists": _kind("link_login", "link_reset"),
    "reset_password": _kind("link", "expires_minutes", optional=("token",)),
    "password_changed": _kind(
        "sessions_ended", "api_keys_revoked", "email_changes_cancelled", "link_reset"
    ),
    "email_change_confirm": _kind("link", "new_email", "expires_minutes", optional=("token",)),
    "email_change_requested": _kind("new_email_masked", "link_reset"),
    "email_changed": _kind("new_email_masked"),
    "account_deleted": _kind(),
    "account_locked": _kind("link_reset"),
    "set_password": _kind("link", "expires_minutes", optional=("token",)),
    # Second factors (issue 15): ``factor`` names it ("An authenticator app", "A passkey").
    "mfa_factor_added": _kind("factor"),
    "mfa_factor_removed": _kind("factor"),
    "mfa_recovery_code_used": _kind("codes_left"),
    "mfa_recovery_codes_regenerated": _kind(),
    "mfa_reset": _kind(),
}
MAIL_KINDS: frozenset[str] = frozenset(_KINDS)

# brand_color lands inside style attributes: HTML escaping does not stop CSS injection,
# so only a hex colour is accepted.
_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_HTTP_URL = re.compile(r"https?://\S+", re.IGNORECASE)


class MailTemplates:
    """Renders mails for one brand.

    Args:
        brand_name: Product name shown in every mail (``KEYTURN_BRAND_NAME``).
        public_url: Base URL of the service, shown in the footer.
        brand_color: Accent colour, ``#rgb`` or ``#rrggbb`` (optionally with alpha).
        logo_url: Absolute http(s) URL of a logo image, the only external resource a
            mail may load; ``None`` shows the brand name instead.

    Raises:
        ValueError: ``brand_color`` is not a hex colour, or a URL is not http(s).
    """

    def __init__(
        self,
        *,
        brand_name: str,
        public_url: str,
        brand_color: str = "#1f6feb",
        logo_url: str | None = None,
    ) -> None:
        if not _HEX_COLOR.fullmatch(brand_color):
            raise ValueError("brand_color must be a hex colour such as '#1f6feb'")
        # An href/src with another scheme (javascript:, data:) must never reach a mail.
        if not _HTTP_URL.fullmatch(public_url):
            raise ValueError("public_url must be an absolute http(s) URL")
        if logo_url is not None and not _HTTP_URL.fullmatch(logo_url):
            raise ValueError("logo_url must be an absolute http(s) URL")
        self._brand: dict[str, str | None] = {
            "brand_name": brand_name,
            "public_url": public_url,
            "brand_color": brand_color,
            "logo_url": logo_url,
        }
        self._env = Environment(
            loader=PackageLoader("keyturn.infra", "mail_templates"),
            # Escape everything in .html; .txt output is plain text and must not be.
            autoescape=select_autoescape(["html"]),
            # A template naming a value nobody passed fails loudly instead of
            # sending a mail with a hole where the link should be.
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    @property
    def environment(self) -> Environment:
        """The Jinja2 environment (strict undefined, HTML autoescape)."""
        return self._env

    def render(self, kind: str, *, to: str, message_id: str, **context: str | int) -> MailMessage:
        """Render the mail of ``kind`` for ``to``.

        Args:
            kind: One of ``MAIL_KINDS``.
            to: Recipient address (also named in the footer).
            message_id: The outbox's ``Message-ID`` (``keyturn.domain_mail.new_message_id``).
            **context: Exactly the values the kind takes (see ``_KINDS``): links,
                ``token``, ``expires_minutes``, ``new_email``, ``new_email_masked``.

        Returns:
            The message with subject, text and HTML.

        Raises:
            ValueError: Unknown kind, or a required value missing, or an unexpected one
                given (a misspelt key would otherwise be dropped silently).
        """
        spec = _KINDS.get(kind)
        if spec is None:
            raise ValueError(f"unknown mail kind {kind!r}")
        given = context.keys()
        if missing := spec.required - given:
            raise ValueError(f"mail {kind!r} is missing {sorted(missing)}")
        if unexpected := given - spec.required - spec.optional:
            raise ValueError(f"mail {kind!r} does not take {sorted(unexpected)}")
        values: dict[str, object] = {
            **dict.fromkeys(spec.optional, ""),
            **{key: str(value) for key, value in context.items()},
            **self._brand,
            "to": to,
        }
        text_template = self._env.get_template(f"{kind}.txt")
        block_context = text_template.new_context(values)
        # A header is one line: fold whatever whitespace the template left.
        subject = " ".join("".join(text_template.blocks["subject"](block_context)).split())
        reason = " ".join("".join(text_template.blocks["reason"](block_context)).split())
        text = text_template.render(values).strip() + "\n"
        html = self._env.get_template(f"{kind}.html").render(values, subject=subject, reason=reason)
        return MailMessage(message_id=message_id, to=to, subject=subject, text=text, html=html)
