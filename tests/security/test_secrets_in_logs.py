"""Every flow, run over HTTP with the production log setup; no secret reaches any output.

The app logs through ``keyturn.observability.logging.configure_logging`` (JSON to stdout, the
standard library joined in) at the production default level. All of stdout, stderr and
every log record (message and args) is searched for every secret the run used or was
issued: passwords (old, new, reset, wrong), access and refresh tokens, the one-time tokens
mailed for verification, reset and email change, and the server's secret key. Mails go to
a real SMTP server (the settings point at it), so a mail body in the output is a leak too.

Then the audit rows the run wrote are searched for the email addresses involved.

ASVS v5.0.0-16.2.5 (no credentials or secrets in logs), v5.0.0-16.4.1 (log encoding),
v5.0.0-14.1.1 / v5.0.0-14.2.x (sensitive data identified and kept out of logs and the
audit trail).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import func, select

from helpers import PASSWORD, bearer, mails_to, new_email
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.models import AuditEventRow
from keyturn.observability.logging import configure_logging
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase 7"
RESET_PASSWORD = "reset to this passphrase 8"
WRONG_PASSWORD = "not the password at all 9"
TARGET_PASSWORD = "the throttled account's own 10"
NAME = "Ada Lovelace-Logcheck"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Root handlers, level and structlog as they were (see tests/unit/test_logging.py)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = False
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _app_logging(level: str, caplog: pytest.LogCaptureFixture) -> None:
    """The app's own log setup (what ``keyturn serve`` runs) at ``level``.

    Called inside the test, so the JSON handler binds the ``sys.stdout`` that ``capfd``
    captures in the call phase; caplog's handler is put back next to it (configure_logging
    replaces the root handlers). The in-process test SMTP server (aiosmtpd, logger
    ``mail.log``) is not the app: it logs whole DATA lines at debug, so it is silenced.
    """
    configure_logging(level)
    root = logging.getLogger()
    root.addHandler(caplog.handler)
    caplog.set_level(root.level)
    caplog.set_level(logging.WARNING, logger="mail.log")


class Secrets:
    """Everything secret the run touched, with where it came from."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, label: str, value: str) -> str:
        assert value, label
        self.found[value] = label
        return value

    def tokens(self, label: str, answer: httpx.Response) -> dict[str, Any]:
        """Records the access and refresh token of a token response."""
        assert answer.status_code == 200, f"{label}: {answer.status_code} {answer.text}"
        body: dict[str, Any] = answer.json()
        self.add(f"{label} access token", body["access_token"])
        self.add(f"{label} refresh token", body["refresh_token"])
        return body


async def _mail_token(smtp: SmtpServer, address: str, subject_word: str) -> str:
    mails = await mails_to(smtp, address)
    (mail,) = [m for m in mails if subject_word in str(m["Subject"]).lower()]
    return str(extract_token(mail))


async def _audit_rows_since(settings: Settings, after_id: int) -> list[AuditEventRow]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as db:
            rows = await db.scalars(
                select(AuditEventRow).where(AuditEventRow.id > after_id).order_by(AuditEventRow.id)
            )
            return list(rows)
    finally:
        await engine.dispose()


async def _last_audit_id(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as db:
            return int(await db.scalar(select(func.coalesce(func.max(AuditEventRow.id), 0))) or 0)
    finally:
        await engine.dispose()


@dataclass
class Run:
    """What one pass over every flow used, and everything it wrote."""

    secrets: Secrets
    personal: list[str]
    outputs: dict[str, str]
    user_id: str
    audit_rows: list[AuditEventRow]


async def _run_every_flow(
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    level: str,
) -> Run:
    _app_logging(level, caplog)
    secrets = Secrets()
    for index, key in enumerate(settings.secret_key):
        secrets.add(f"secret_key[{index}]", str(key))
    for password in (PASSWORD, NEW_PASSWORD, RESET_PASSWORD, WRONG_PASSWORD, TARGET_PASSWORD):
        secrets.add("password", password)
    email, new_address = new_email(), new_email()
    first_audit_id = await _last_audit_id(settings)
    user_agent = {"User-Agent": "logcheck-agent/1.0"}

    # Signup with a name, then verification with the token from the mail.
    signup = await client.post(
        "/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "name": NAME},
        headers=user_agent,
    )
    assert signup.status_code == 202, signup.text
    verify_token = secrets.add("verify token", await _mail_token(smtp, email, "confirm"))
    verified = await client.post("/v1/auth/email/verify", json={"token": verify_token})
    assert verified.status_code == 204, verified.text

    # Login, refresh, and the reuse of a rotated refresh token (which ends the session).
    tokens = secrets.tokens(
        "login",
        await client.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=user_agent
        ),
    )
    user_id = tokens["user"]["id"]
    refreshed = secrets.tokens(
        "refresh",
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
    )
    again = secrets.tokens(
        "refresh 2",
        await client.post("/v1/auth/refresh", json={"refresh_token": refreshed["refresh_token"]}),
    )
    # Replaying an older generation (outside any grace) is reuse: the session ends.
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reuse.status_code == 401, reuse.text
    gone = await client.post("/v1/auth/refresh", json={"refresh_token": again["refresh_token"]})
    assert gone.status_code == 401, gone.text

    # Password change.
    tokens = secrets.tokens(
        "login 2",
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
    )
    changed = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 204, changed.text

    # Forgot and reset, with the token from the mail.
    forgot = await client.post("/v1/auth/password/forgot", json={"email": email})
    assert forgot.status_code == 202, forgot.text
    mails = await mails_to(smtp, email, count=3)
    (reset_mail,) = [m for m in mails if "reset" in str(m["Subject"]).lower()]
    reset_token = secrets.add("reset token", extract_token(reset_mail))
    reset = await client.post(
        "/v1/auth/password/reset", json={"token": reset_token, "password": RESET_PASSWORD}
    )
    assert reset.status_code == 204, reset.text

    # Email change: request, then confirm with the token mailed to the new address.
    tokens = secrets.tokens(
        "login 3",
        await client.post("/v1/auth/login", json={"email": email, "password": RESET_PASSWORD}),
    )
    headers = bearer(tokens["access_token"])
    asked = await client.post(
        "/v1/me/email", json={"password": RESET_PASSWORD, "new_email": new_address}, headers=headers
    )
    assert asked.status_code == 202, asked.text
    (confirm_mail,) = await mails_to(smtp, new_address)
    change_token = secrets.add("email change token", extract_token(confirm_mail))
    confirmed = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text

    # A second session, to log out of below.
    spare = secrets.tokens(
        "login 4",
        await client.post(
            "/v1/auth/login", json={"email": new_address, "password": RESET_PASSWORD}
        ),
    )
    # Failed logins until 429, on a second account (the throttle would also, rightly, stop
    # this account's password-confirmed deletion below from this IP).
    target = new_email()
    target_signup = await client.post(
        "/v1/auth/signup", json={"email": target, "password": TARGET_PASSWORD}
    )
    assert target_signup.status_code == 202, target_signup.text
    statuses = []
    for _ in range(30):
        failed = await client.post(
            "/v1/auth/login", json={"email": target, "password": WRONG_PASSWORD}
        )
        statuses.append(failed.status_code)
        if failed.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}, statuses

    # Logout, export, delete.
    logout = await client.post("/v1/auth/logout", headers=bearer(spare["access_token"]))
    assert logout.status_code == 204, logout.text
    export = await client.get("/v1/me/export", headers=headers)
    assert export.status_code == 200, export.text
    deleted = await client.request(
        "DELETE", "/v1/me", json={"password": RESET_PASSWORD}, headers=headers
    )
    assert deleted.status_code == 204, deleted.text
    await mails_to(smtp, new_address, count=2)  # the deletion notice went out (outbox ran)

    # Let the outbox worker log the last delivery before the output is read.
    await asyncio.sleep(0.2)

    # Everything any part of the app wrote.
    captured = capfd.readouterr()
    outputs = {"stdout": captured.out, "stderr": captured.err, "caplog.text": caplog.text}
    for number, record in enumerate(caplog.records):
        outputs[f"record {number} ({record.name}) message"] = record.getMessage()
        outputs[f"record {number} ({record.name}) msg"] = repr(record.msg)
        outputs[f"record {number} ({record.name}) args"] = repr(record.args)
    # Control: the capture did see the flows (the request log of each one).
    json_lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    logged = {(line.get("event"), line.get("path")) for line in json_lines}
    for path in ("/v1/auth/login", "/v1/me/email/confirm", "/v1/me/export"):
        assert ("request", path) in logged, captured.out[:2000]
    assert ("refresh_token_reuse", None) in logged
    assert caplog.records, "caplog saw nothing: the capture is broken, not the app clean"
    return Run(
        secrets=secrets,
        personal=[email, new_address, target, NAME],
        outputs=outputs,
        user_id=user_id,
        audit_rows=await _audit_rows_since(settings, first_audit_id),
    )


def _found(values: dict[str, str], outputs: dict[str, str]) -> list[str]:
    return [
        f"{label} in {where}"
        for value, label in values.items()
        for where, text in outputs.items()
        if value in text
    ]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("level", ["info", "debug"])
async def test_no_secret_in_any_output_across_every_flow(
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    level: str,
) -> None:
    """v5.0.0-16.2.5, v5.0.0-14.2.4: every flow, every output, searched for its secrets.

    At the production default (info) and at debug: no level may print a secret.
    """
    run = await _run_every_flow(client, smtp, settings, capfd, caplog, level)
    leaks = _found(run.secrets.found, run.outputs)
    assert not leaks, leaks
    # The mails' bodies went to SMTP only (the console mailer would print them).
    assert not _found({"Token:": "a mail body"}, run.outputs)
    if level == "info":
        # Personal data stays out of the production log as well (v5.0.0-14.2.4).
        personal = _found(dict.fromkeys(run.personal, "personal data"), run.outputs)
        assert not personal, personal


@pytest.mark.usefixtures("restore_logging")
async def test_no_email_or_secret_in_audit_rows(
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """v5.0.0-16.2.5, v5.0.0-14.2.4: audit rows hold user ids, never addresses or secrets.

    So deleting an account never has to edit the hash chain.
    """
    run = await _run_every_flow(client, smtp, settings, capfd, caplog, "info")
    types = {row.type for row in run.audit_rows if str(row.user_id) == run.user_id}
    assert {"login.succeeded", "logout"} <= types, types
    forbidden = dict.fromkeys(run.personal, "personal data")
    forbidden |= {value.split("@")[0]: "email local part" for value in run.personal if "@" in value}
    forbidden |= run.secrets.found
    for row in run.audit_rows:
        fields = {
            "type": row.type,
            "ip": row.ip or "",
            "data": json.dumps(row.data, default=str),
        }
        found = _found(forbidden, fields)
        assert not found, f"audit row {row.id} ({row.type}): {found}"


@pytest.mark.usefixtures("restore_logging")
async def test_debug_log_keeps_personal_data_out(
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """v5.0.0-14.2.4: an operator turning on debug logging must not get PII and hashes.

    The database drivers log statements with their parameters at debug; configure_logging
    keeps them at WARNING whatever the level.
    """
    run = await _run_every_flow(client, smtp, settings, capfd, caplog, "debug")
    personal = _found(dict.fromkeys(run.personal, "personal data"), run.outputs)
    assert not personal, personal[:5]
    assert not _found({"$argon2id$": "a password hash"}, run.outputs)
