"""MailMessage, message ids, the console mailer's stream, SMTP URL parsing and build_mailer.

What every mailer delivers is the contract suite's (test_mailer_contract.py).
"""

from __future__ import annotations

import re

import pytest

from keyturn.domain_mail import MailMessage, new_message_id
from keyturn.infra.mail import ConsoleMailer, SmtpMailer, build_mailer

SENDER = "Keyturn <no-reply@example.com>"
SECRET = "s3cret-PW"


def make_message(*, html: str | None = "<p>Hello</p>") -> MailMessage:
    return MailMessage(
        message_id=new_message_id("example.com"),
        to="alice@example.com",
        subject="Confirm your email address",
        text="Hello\nToken: abc123\n",
        html=html,
    )


def test_new_message_id_is_an_rfc5322_msg_id_and_unique() -> None:
    first = new_message_id("mail.example.com")
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.com>", first)
    assert new_message_id("mail.example.com") != first
    assert new_message_id("[127.0.0.1]").endswith("@[127.0.0.1]>")


@pytest.mark.parametrize("domain", ["", "exa mple.com", "a@b", "x>", "bad\r\nBcc: x"])
def test_new_message_id_refuses_a_bad_domain(domain: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        new_message_id(domain)


@pytest.mark.parametrize("html", ["<p>Hello</p>", None])
def test_mail_message_json_roundtrip(html: str | None) -> None:
    message = make_message(html=html)
    data = message.to_json()
    assert isinstance(data, bytes)
    assert MailMessage.from_json(data) == message


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"message_id": "<a@b>", "to": "a@b", "subject": "s"}',
        b'{"message_id": "<a@b>", "to": "a@b", "subject": "s", "text": 1}',
        b'{"message_id": "<a@b>", "to": "a@b", "subject": "s", "text": "t", "html": 2}',
        b'{"message_id": "<a@b>", "to": "a@b", "subject": "s", "text": "t", "bcc": "x"}',
    ],
)
def test_mail_message_from_json_refuses_bad_data(data: bytes) -> None:
    with pytest.raises(ValueError, match="mail message"):
        MailMessage.from_json(data)


@pytest.mark.anyio
async def test_console_mailer_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Mails go to stderr so stdout stays one JSON log line per line."""
    await ConsoleMailer(sender=SENDER).send(make_message(html=None))
    captured = capsys.readouterr()
    assert "Token: abc123" in captured.err
    assert "abc123" not in captured.out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, None, None, False, False)),
        ("SMTP://mail.example.com:2525/", ("mail.example.com", 2525, None, None, False, False)),
        ("smtp://h:587?starttls=1", ("h", 587, None, None, False, True)),
        ("smtp://h:587?starttls=true", ("h", 587, None, None, False, True)),
        ("smtp://h?starttls=0", ("h", 25, None, None, False, False)),
        ("smtps://h", ("h", 465, None, None, True, False)),
        ("smtps://u:p@h:1465", ("h", 1465, "u", "p", True, False)),
        (
            "smtp://us%40er:p%40ss%2Fw%3Ard%25@[::1]:25",
            ("::1", 25, "us@er", "p@ss/w:rd%", False, False),
        ),
    ],
)
def test_from_url_parses(
    url: str, expected: tuple[str, int, str | None, str | None, bool, bool]
) -> None:
    mailer = SmtpMailer.from_url(url, sender=SENDER, timeout=3)
    host, port, user, password, use_tls, start_tls = expected
    assert (mailer.hostname, mailer.port, mailer.username) == (host, port, user)
    assert mailer._password == password
    assert (mailer.use_tls, mailer.start_tls, mailer.timeout) == (use_tls, start_tls, 3)
    assert mailer.sender == SENDER


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (f"http://u:{SECRET}@h", "scheme"),
        (f"smtp://u:{SECRET}@", "no host"),
        (f"smtp://u:{SECRET}@h:notaport", "malformed"),
        (f"smtp://u:{SECRET}@h:99999", "malformed"),
        (f"smtp://u:{SECRET}@h/path", "path"),
        (f"smtp://u:{SECRET}@h#frag", "path or fragment"),
        (f"smtp://u:{SECRET}@h?tls=1", "only the 'starttls'"),
        (f"smtp://u:{SECRET}@h?starttls=maybe", "must be 1 or 0"),
        (f"smtps://u:{SECRET}@h?starttls=1", "smtps"),
        ("smtp://user@h", "both user and password"),
        (f"smtp://:{SECRET}@h", "both user and password"),
        (f"{SECRET}", "scheme"),
    ],
)
def test_from_url_refuses_bad_urls_without_echoing_the_password(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        SmtpMailer.from_url(url, sender=SENDER)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None


def test_repr_hides_the_password() -> None:
    mailer = SmtpMailer.from_url(f"smtp://user:{SECRET}@h:2525?starttls=1", sender=SENDER)
    assert repr(mailer) == "SmtpMailer(smtp://user:***@h:2525?starttls=1)"
    assert SECRET not in repr(SmtpMailer.from_url(f"smtps://u:{SECRET}@h", sender=SENDER))


def test_implicit_tls_and_starttls_are_exclusive() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        SmtpMailer(hostname="h", port=25, sender=SENDER, use_tls=True, start_tls=True)


@pytest.mark.parametrize("url", [None, ""])
def test_build_mailer_without_url_is_the_console_mailer(url: str | None) -> None:
    assert isinstance(build_mailer(url, sender=SENDER), ConsoleMailer)


def test_build_mailer_with_url_is_smtp() -> None:
    mailer = build_mailer("smtps://u:p@mail.example.com", sender=SENDER, timeout=2)
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.hostname, mailer.port, mailer.use_tls, mailer.timeout) == (
        "mail.example.com",
        465,
        True,
        2,
    )
    with pytest.raises(ValueError, match="scheme"):
        build_mailer("smtpx://h", sender=SENDER)
