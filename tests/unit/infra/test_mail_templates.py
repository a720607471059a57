"""Every mail kind renders a subject, a text and an HTML version for the brand."""

from __future__ import annotations

import re
from email.message import EmailMessage
from importlib.resources import files

import pytest
from jinja2 import UndefinedError

from keyturn.domain_mail import MailMessage
from keyturn.infra.templates import MAIL_KINDS, MailTemplates
from smtp_server import extract_token

BRAND = "Acme ID"
PUBLIC_URL = "https://id.acme.example"
TO = "alice@example.com"
MSG_ID = "<0123@acme.example>"
EVIL = '<script>alert("x")</script>'

CONTEXTS: dict[str, dict[str, str | int]] = {
    "verify_email": {
        "link": f"{PUBLIC_URL}/verify?token=tok-verify",
        "token": "tok-verify",
        "expires_minutes": 60,
    },
    "account_exists": {"link_login": f"{PUBLIC_URL}/login", "link_reset": f"{PUBLIC_URL}/reset"},
    "reset_password": {
        "link": f"{PUBLIC_URL}/reset?token=tok-reset",
        "token": "tok-reset",
        "expires_minutes": 30,
    },
    "password_changed": {
        "sessions_ended": 2,
        "api_keys_revoked": 1,
        "email_changes_cancelled": 1,
        "link_reset": f"{PUBLIC_URL}/forgot",
    },
    "email_change_confirm": {
        "link": f"{PUBLIC_URL}/email?token=tok-change",
        "token": "tok-change",
        "new_email": "alice@new.example",
        "expires_minutes": 60,
    },
    "email_change_requested": {
        "new_email_masked": "a***@n***.example",
        "link_reset": f"{PUBLIC_URL}/forgot",
    },
    "email_changed": {"new_email_masked": "a***@n***.example"},
    "account_deleted": {},
    "account_locked": {"link_reset": f"{PUBLIC_URL}/reset"},
    "set_password": {
        "link": f"{PUBLIC_URL}/reset?token=tok-set",
        "token": "tok-set",
        "expires_minutes": 1440,
    },
    "mfa_factor_added": {"factor": "An authenticator app"},
    "mfa_factor_removed": {"factor": "A passkey"},
    "mfa_recovery_code_used": {"codes_left": 9},
    "mfa_recovery_codes_regenerated": {},
    "mfa_reset": {},
}
SUBJECTS = {
    "verify_email": "Confirm your email address",
    "account_exists": "Someone tried to sign up with your email address",
    "reset_password": "Reset your password",
    "password_changed": "Your password was changed",
    "email_change_confirm": "Confirm your new email address",
    "email_change_requested": "A change of your email address was requested",
    "email_changed": "Your email address was changed",
    "account_deleted": "Your account was deleted",
    "account_locked": "Your account was temporarily locked",
    "set_password": "Your Acme ID account is ready: choose a password",
    "mfa_factor_added": "A second factor was added to your account",
    "mfa_factor_removed": "A second factor was removed from your account",
    "mfa_recovery_code_used": "A recovery code was used to sign in",
    "mfa_recovery_codes_regenerated": "New recovery codes were made for your account",
    "mfa_reset": "Your second factors were reset",
}


@pytest.fixture
def templates() -> MailTemplates:
    return MailTemplates(brand_name=BRAND, public_url=PUBLIC_URL, brand_color="#aa3300")


def render(templates: MailTemplates, kind: str, **overrides: str | int) -> MailMessage:
    return templates.render(kind, to=TO, message_id=MSG_ID, **{**CONTEXTS[kind], **overrides})


def as_email(message: MailMessage) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail.set_content(message.text)
    return mail


def test_every_kind_is_covered() -> None:
    assert set(CONTEXTS) == set(SUBJECTS) == MAIL_KINDS


@pytest.mark.parametrize("kind", sorted(MAIL_KINDS))
def test_kind_renders_subject_text_and_html(templates: MailTemplates, kind: str) -> None:
    message = render(templates, kind)
    assert (message.message_id, message.to) == (MSG_ID, TO)
    assert message.subject == SUBJECTS[kind]
    assert "\n" not in message.subject
    assert message.html is not None
    for body in (message.text, message.html):
        assert BRAND in body
        assert f"This email was sent to {TO}" in body  # says why, in the footer
        assert "because" in body
        for value in CONTEXTS[kind].values():
            assert str(value) in body
    assert message.text.endswith(".\n")
    assert "{{" not in message.text
    assert "{{" not in message.html
    assert "<" not in message.text  # plain text, no markup leaking in
    assert message.html.lstrip().startswith("<!DOCTYPE html>")
    assert f"<title>{message.subject}</title>" in message.html
    assert "#aa3300" in message.html


@pytest.mark.parametrize("kind", ["verify_email", "reset_password", "email_change_confirm"])
def test_token_is_on_its_own_line_in_the_text(templates: MailTemplates, kind: str) -> None:
    message = render(templates, kind)
    token = str(CONTEXTS[kind]["token"])
    assert f"\nToken: {token}\n" in message.text
    assert extract_token(as_email(message)) == token


@pytest.mark.parametrize("kind", ["verify_email", "reset_password", "email_change_confirm"])
def test_token_is_optional(templates: MailTemplates, kind: str) -> None:
    context = {key: value for key, value in CONTEXTS[kind].items() if key != "token"}
    message = templates.render(kind, to=TO, message_id=MSG_ID, **context)
    assert "Token:" not in message.text
    assert message.html is not None
    assert "paste this one" not in message.html
    # The link still carries it, and extract_token falls back to it.
    assert extract_token(as_email(message)).startswith("tok-")


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("email_change_requested", "new_email_masked"),
        ("email_changed", "new_email_masked"),
        ("email_change_confirm", "new_email"),
        ("verify_email", "token"),
        ("verify_email", "link"),
    ],
)
def test_html_escapes_hostile_values(templates: MailTemplates, kind: str, key: str) -> None:
    message = render(templates, kind, **{key: EVIL})
    assert message.html is not None
    assert "<script" not in message.html
    assert "&lt;script&gt;" in message.html
    assert EVIL in message.text  # text/plain is not HTML: shown verbatim, never executed


def test_html_escapes_a_hostile_brand_name() -> None:
    evil_brand = MailTemplates(brand_name=EVIL, public_url=PUBLIC_URL)
    message = render(evil_brand, "password_changed")
    assert message.html is not None
    assert "<script" not in message.html
    assert "<script" not in message.subject


def test_logo_is_the_only_external_resource(templates: MailTemplates) -> None:
    without = render(templates, "account_locked").html
    assert without is not None
    assert "<img" not in without
    assert not re.search(r"<link|<script|url\(|@import", without)
    with_logo = MailTemplates(
        brand_name=BRAND, public_url=PUBLIC_URL, logo_url="https://cdn.acme.example/logo.png"
    )
    html = render(with_logo, "account_locked").html
    assert html is not None
    assert re.findall(r'src="([^"]*)"', html) == ["https://cdn.acme.example/logo.png"]
    assert f'alt="{BRAND}"' in html


def test_unknown_kind(templates: MailTemplates) -> None:
    with pytest.raises(ValueError, match="unknown mail kind 'welcome'"):
        templates.render("welcome", to=TO, message_id=MSG_ID)


def test_missing_context_raises(templates: MailTemplates) -> None:
    with pytest.raises(ValueError, match=r"missing \['expires_minutes', 'link'\]"):
        templates.render("verify_email", to=TO, message_id=MSG_ID, token="t")


@pytest.mark.parametrize("key", ["link_rest", "brand_name", "logo_url", "token"])
def test_unexpected_context_raises(templates: MailTemplates, key: str) -> None:
    with pytest.raises(ValueError, match="does not take"):
        templates.render("account_locked", to=TO, message_id=MSG_ID, link_reset="x", **{key: "y"})


def test_environment_is_strict_and_escapes_html_only(templates: MailTemplates) -> None:
    env = templates.environment
    with pytest.raises(UndefinedError):
        env.from_string("{{ nobody_passed_this }}").render()
    autoescape = env.autoescape
    assert callable(autoescape)
    assert autoescape("mail.html") is True
    assert autoescape("mail.txt") is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"brand_color": "red; background:url(https://evil.example/x)"},
        {"brand_color": "#12345"},
        {"logo_url": "javascript:alert(1)"},
        {"logo_url": "//cdn.example/logo.png"},
        {"public_url": "id.acme.example"},
    ],
)
def test_constructor_refuses_unsafe_brand_values(kwargs: dict[str, str]) -> None:
    values = {"brand_name": BRAND, "public_url": PUBLIC_URL, **kwargs}
    with pytest.raises(ValueError, match="must be"):
        MailTemplates(**values)


def test_templates_ship_with_the_package() -> None:
    folder = files("keyturn.infra") / "mail_templates"
    names = {entry.name for entry in folder.iterdir()}
    for kind in MAIL_KINDS:
        assert {f"{kind}.txt", f"{kind}.html"} <= names
    assert {"base.txt", "base.html"} <= names
