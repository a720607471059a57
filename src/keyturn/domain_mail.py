"""The mail message both the outbox service and the mailers handle (bottom layer).

The outbox stores a ``MailMessage`` (encrypted, as ``to_json`` bytes); its ``message_id``
is the idempotency key, so a resend after a crash carries the same ``Message-ID``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from typing import Self

import orjson

__all__ = ["MailMessage", "new_message_id"]

# Dot-atom domain or an address literal, as allowed right of "@" in RFC 5322 section 3.6.4.
_MSG_ID_DOMAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+|\[[^\[\]\\\s]*\]")


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One rendered mail, as the outbox stores it.

    Attributes:
        message_id: RFC 5322 ``msg-id`` including the angle brackets (``new_message_id``).
        to: Recipient address.
        subject: Subject line (one line).
        text: Plain-text body; always sent.
        html: Optional HTML alternative of the same content.
    """

    message_id: str
    to: str
    subject: str
    text: str
    html: str | None = None

    def to_json(self) -> bytes:
        """Serialise for the outbox (which encrypts the bytes at rest)."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        """Parse bytes written by ``to_json``.

        Raises:
            ValueError: ``data`` is not a JSON object with the expected string fields.
        """
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError("mail message is not valid JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError("mail message must be a JSON object")
        fields = {"message_id", "to", "subject", "text", "html"}
        if unknown := raw.keys() - fields:
            raise ValueError(f"unknown mail message fields: {sorted(unknown)}")
        for name in ("message_id", "to", "subject", "text"):
            if not isinstance(raw.get(name), str):
                raise ValueError(f"mail message field {name!r} must be a string")
        html = raw.get("html")
        if html is not None and not isinstance(html, str):
            raise ValueError("mail message field 'html' must be a string or null")
        return cls(
            message_id=raw["message_id"],
            to=raw["to"],
            subject=raw["subject"],
            text=raw["text"],
            html=html,
        )


def new_message_id(domain: str) -> str:
    """Return a fresh RFC 5322 section 3.6.4 ``msg-id``: ``<uuid4hex@domain>``.

    The id is generated once, when the mail enters the outbox, and reused on every
    delivery attempt.

    Raises:
        ValueError: ``domain`` is not a dot-atom or an address literal.
    """
    if not _MSG_ID_DOMAIN.fullmatch(domain):
        raise ValueError("message id domain must be a dot-atom such as 'example.com'")
    return f"<{uuid.uuid4().hex}@{domain}>"
