"""What a person sees first (issue 13 item 3): the dev start block, log formats, migrate.

The real commands are run in tests/e2e/test_cli_operator.py; these pin the pieces.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from keyturn.cli.banner import start_banner
from keyturn.config import Settings, listener_url
from keyturn.db.migrate import Upgrade
from keyturn.observability.logging import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    alembic_level = logging.getLogger("alembic").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(alembic_level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _settings(**values: object) -> Settings:
    return Settings(**values)


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ({"host": "127.0.0.1", "port": 8100}, "http://127.0.0.1:8100"),
        ({"host": "::1", "port": 8100}, "http://[::1]:8100"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),  # noqa: S104
        (
            {
                "host": "localhost",
                "port": 8443,
                "tls_cert_file": Path("cert.pem"),
                "tls_key_file": Path("key.pem"),
            },
            "https://localhost:8443",
        ),
    ],
    ids=["ipv4", "ipv6-brackets", "any", "tls"],
)
def test_listener_url_follows_host_port_and_tls(values: dict[str, object], url: str) -> None:
    assert listener_url(_settings(**values)) == url


def test_start_banner_names_api_docs_signup_and_dev_mailbox() -> None:
    banner = start_banner(_settings(host="::1", port=8123))
    lines = banner.splitlines()
    assert lines[0].startswith("Keyturn ")
    assert "http://[::1]:8123" in lines[0]
    for path in ("/v1", "/docs", "/ui/signup", "/ui/dev/mail"):
        assert any(line.rstrip().endswith(f"http://[::1]:8123{path}") for line in lines), banner
    assert "dev mailbox" in banner
    assert len(lines) <= 10  # one short block


def test_start_banner_leaves_out_what_is_off() -> None:
    banner = start_banner(
        _settings(port=8123, docs_enabled=False, smtp_url="smtp://127.0.0.1:2525")
    )
    assert "/docs" not in banner
    assert "no SMTP server" not in banner
    assert "/ui/signup" in banner


@pytest.mark.parametrize(
    ("values", "renderer"),
    [
        ({}, "console"),
        ({"env": "production"}, "json"),
        ({"log_format": "json"}, "json"),
        ({"env": "production", "log_format": "console"}, "console"),
    ],
)
def test_log_format_defaults_console_in_dev_json_in_production(
    values: dict[str, object], renderer: str
) -> None:
    assert _settings(**values).log_renderer == renderer


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log_format"):
        _settings(log_format="xml")


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_are_readable_and_cannot_be_forged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "console")
    structlog.contextvars.bind_contextvars(request_id="req-12345678")
    hostile = 'evil@example.com\n{"event": "login.succeeded"}\x1b[31m'
    structlog.get_logger("keyturn.test").info("login", user_agent=hostile)
    logging.getLogger("uvicorn.error").info("from the standard library")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert "[info" in lines[0]
    assert "login" in lines[0]
    assert "request_id=req-12345678" in lines[0]
    assert "\x1b" not in lines[0]
    assert "\\x0a" in lines[0]  # the newline is shown, not obeyed
    assert "from the standard library" in lines[1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])


@pytest.mark.usefixtures("restore_logging")
def test_json_stays_the_default_of_configure_logging(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    structlog.get_logger("keyturn.test").info("hello")
    assert json.loads(capsys.readouterr().out)["event"] == "hello"


@pytest.mark.usefixtures("restore_logging")
def test_alembic_chatter_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "console")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("alembic.runtime.migration").warning("a real alembic warning")
    out = capsys.readouterr().out
    assert "Context impl" not in out
    assert "a real alembic warning" in out


@pytest.mark.parametrize(
    ("done", "summary"),
    [
        (
            Upgrade(before=None, after="0013", applied=tuple(f"{n:04}" for n in range(1, 14))),
            "applied 0001..0013",
        ),
        (Upgrade(before="0012", after="0013", applied=("0013",)), "applied 0013"),
        (Upgrade(before="0013", after="0013", applied=()), "already at 0013"),
    ],
    ids=["empty-database", "one-step", "current"],
)
def test_upgrade_summary(done: Upgrade, summary: str) -> None:
    assert done.summary() == summary
