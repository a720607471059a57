"""SmtpMailer against a real SMTP server (aiosmtpd, tests/smtp_server.py).

What every mailer delivers is the contract suite's (test_mailer_contract.py); here: MIME,
envelope, AUTH, TLS and how each failure is classified.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from keyturn.domain_mail import MailMessage, new_message_id
from keyturn.errors import MailDeliveryError
from keyturn.infra.mail import SmtpMailer
from keyturn.infra.templates import MailTemplates
from net import free_port, self_signed_certificate
from smtp_server import SmtpServer, extract_token

SENDER = "Keyturn <no-reply@example.com>"
PASSWORD = "p@ss:w/rd%"


def make_message(*, to: str = "alice@example.com", html: str | None = "<p>Hi</p>") -> MailMessage:
    return MailMessage(
        message_id=new_message_id("example.com"),
        to=to,
        subject="Reset your password",
        text="Hello Alice\nToken: abc123\n",
        html=html,
    )


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed cert for 127.0.0.1 and a client trusting it."""
    cert_file, key_file = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


def only(server: SmtpServer) -> EmailMessage:
    [received] = server.wait_for(1)
    return received


@pytest.mark.anyio
async def test_mime_headers_parts_and_envelope(server: SmtpServer) -> None:
    mailer = SmtpMailer.from_url(server.url, sender=SENDER)
    await mailer.send(make_message())
    await mailer.close()
    received = only(server)
    assert received["From"] == SENDER
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Date"] is not None
    assert received.get_content_type() == "multipart/alternative"
    html = received.get_body(preferencelist=("html",))
    assert isinstance(html, EmailMessage)
    assert html.get_content().rstrip() == "<p>Hi</p>"
    assert extract_token(received) == "abc123"
    assert server.envelopes == [("no-reply@example.com", ["alice@example.com"])]


@pytest.mark.anyio
async def test_text_only_message_is_a_single_part(server: SmtpServer) -> None:
    await SmtpMailer.from_url(server.url, sender=SENDER).send(make_message(html=None))
    received = only(server)
    assert received.get_content_type() == "text/plain"
    assert received.get_body(preferencelist=("html",)) is None


@pytest.mark.anyio
async def test_rendered_template_roundtrip_yields_the_token(server: SmtpServer) -> None:
    templates = MailTemplates(brand_name="Keyturn", public_url="https://id.example.com")
    message = templates.render(
        "verify_email",
        to="bob@example.com",
        message_id=new_message_id("example.com"),
        link="https://id.example.com/verify?token=tok_-123",
        token="tok_-123",
        expires_minutes=60,
    )
    await SmtpMailer.from_url(server.url, sender=SENDER).send(message)
    received = only(server)
    assert extract_token(received) == "tok_-123"
    assert received["Subject"] == "Confirm your email address"


@pytest.mark.anyio
async def test_auth_login_delivers() -> None:
    with SmtpServer(auth=("mailer", PASSWORD)) as server:
        assert "p%40ss%3Aw%2Frd%25" in server.url
        await SmtpMailer.from_url(server.url, sender=SENDER).send(make_message())
        assert only(server)["To"] == "alice@example.com"


@pytest.mark.anyio
async def test_wrong_password_is_temporary_and_not_echoed() -> None:
    wrong = "Wr0ng-Secret"
    with SmtpServer(auth=("mailer", PASSWORD)) as server:
        mailer = SmtpMailer.from_url(
            f"smtp://mailer:{wrong}@127.0.0.1:{server.port}", sender=SENDER
        )
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(make_message())
        # Bad credentials are the relay configuration's fault, not this message's.
        assert not caught.value.permanent
        assert wrong not in str(caught.value)
        assert server.messages == []


@pytest.mark.anyio
async def test_missing_login_when_auth_is_required_is_temporary() -> None:
    with SmtpServer(auth=("mailer", PASSWORD)) as server:
        mailer = SmtpMailer.from_url(f"smtp://127.0.0.1:{server.port}", sender=SENDER)
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(make_message())
        assert not caught.value.permanent


@pytest.mark.anyio
async def test_required_starttls_not_offered_is_temporary(server: SmtpServer) -> None:
    mailer = SmtpMailer.from_url(f"{server.url}?starttls=1", sender=SENDER)
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(make_message())
    assert not caught.value.permanent
    assert server.messages == []


@pytest.mark.anyio
async def test_starttls_delivers(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair
    with SmtpServer(starttls_context=server_ctx, auth=("mailer", PASSWORD)) as server:
        assert server.url.endswith("?starttls=1")
        mailer = SmtpMailer.from_url(server.url, sender=SENDER, tls_context=client_ctx)
        await mailer.send(make_message())
        assert only(server)["Auto-Submitted"] == "auto-generated"


@pytest.mark.anyio
async def test_implicit_tls_delivers(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair
    with SmtpServer(tls_context=server_ctx) as server:
        assert server.url.startswith("smtps://")
        mailer = SmtpMailer.from_url(server.url, sender=SENDER, tls_context=client_ctx)
        assert mailer.use_tls
        await mailer.send(make_message())
        assert only(server)["To"] == "alice@example.com"


@pytest.mark.anyio
async def test_untrusted_certificate_is_temporary(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    with SmtpServer(tls_context=server_ctx) as server:
        mailer = SmtpMailer.from_url(server.url, sender=SENDER, timeout=5)
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(make_message())
        assert not caught.value.permanent
        assert server.messages == []


@pytest.mark.anyio
async def test_stopped_server_is_temporary_and_restarts_on_the_same_port() -> None:
    server = SmtpServer()
    server.start()
    port = server.port
    server.stop()
    mailer = SmtpMailer.from_url(server.url, sender=SENDER, timeout=2)
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(make_message())
    assert not caught.value.permanent
    assert isinstance(caught.value.__cause__, OSError)
    server.start()
    try:
        assert server.port == port
        await mailer.send(make_message())
        assert only(server)["To"] == "alice@example.com"
    finally:
        server.stop()


@pytest.mark.anyio
async def test_silent_server_times_out_as_temporary() -> None:
    # Accepts TCP connections (kernel backlog) but never sends the SMTP greeting.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        mailer = SmtpMailer.from_url(f"smtp://127.0.0.1:{port}", sender=SENDER, timeout=0.3)
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(make_message())
    assert not caught.value.permanent
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such user", True), ("450 4.2.1 Mailbox busy", False)],
)
async def test_refused_recipient(server: SmtpServer, reply: str, permanent: bool) -> None:
    server.rcpt_replies["gone@example.com"] = reply
    mailer = SmtpMailer.from_url(server.url, sender=SENDER)
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(make_message(to="gone@example.com"))
    assert caught.value.permanent is permanent
    assert reply[:3] in str(caught.value)
    assert server.messages == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.6.0 Message rejected", True), ("451 4.3.0 Try again later", False)],
)
async def test_refused_data(server: SmtpServer, reply: str, permanent: bool) -> None:
    server.data_reply = reply
    with pytest.raises(MailDeliveryError) as caught:
        await SmtpMailer.from_url(server.url, sender=SENDER).send(make_message())
    assert caught.value.permanent is permanent
    assert reply[:3] in str(caught.value)
    server.data_reply = None
    await SmtpMailer.from_url(server.url, sender=SENDER).send(make_message())
    assert only(server)["To"] == "alice@example.com"


@pytest.mark.anyio
async def test_header_injection_is_permanent_and_sends_nothing(server: SmtpServer) -> None:
    mailer = SmtpMailer.from_url(server.url, sender=SENDER)
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(make_message(to="alice@example.com\r\nBcc: eve@example.com"))
    assert caught.value.permanent
    assert server.messages == []


def test_wait_for_reports_what_arrived_on_timeout(server: SmtpServer) -> None:
    with pytest.raises(AssertionError, match="expected 1 mail"):
        server.wait_for(1, timeout=0.05)


@pytest.mark.anyio
async def test_wait_for_async(server: SmtpServer) -> None:
    await SmtpMailer.from_url(server.url, sender=SENDER).send(make_message())
    [received] = await server.wait_for_async(1)
    assert received["Subject"] == "Reset your password"
    server.clear()
    assert server.messages == []
    with pytest.raises(AssertionError, match="got 0"):
        await server.wait_for_async(1, timeout=0.05)


def test_free_port_is_bindable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free_port()))
