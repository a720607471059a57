"""``keyturn audit verify``, ``seal`` and ``prune`` (DESIGN.md section 3a and 5; issue 17).

The tampering happens on a SQLite file private to the test (its own data dir).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from typer.testing import CliRunner

from e2e.processes import LOW_ARGON2, keyturn_env, run_in_process, run_keyturn
from helpers import PASSWORD
from keyturn.cli.main import app

pytestmark = pytest.mark.slow


def _sql(database: Path, statement: str) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(statement)


def test_verify_passes_on_a_clean_log_and_fails_after_tampering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = keyturn_env(data, LOW_ARGON2)
    assert run_keyturn(["migrate"], env).returncode == 0

    empty = run_in_process(["audit", "verify"], env)
    assert empty.returncode == 0, empty.stderr
    assert "audit chain intact: 0 rows" in empty.stdout

    for number in range(3):
        created = run_in_process(
            ["users", "create-admin", "--email", f"admin{number}@example.com", "--password-stdin"],
            env,
            stdin=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
    # No server ran: the rows wait for a sealer, and verify says so.
    waiting = run_in_process(["audit", "verify"], env)
    assert waiting.returncode == 0, waiting.stderr
    assert "audit chain intact: 0 rows" in waiting.stdout
    assert "unsealed: 3 rows, oldest" in waiting.stdout
    sealed = run_in_process(["audit", "seal"], env)
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed 3 rows" in sealed.stdout
    clean = run_in_process(["audit", "verify"], env)
    assert clean.returncode == 0, clean.stderr
    assert "audit chain intact: 3 rows" in clean.stdout
    assert "head: id=3 hash=" in clean.stdout
    assert "unsealed: 0 rows" in clean.stdout

    database = data / "keyturn.db"
    # Two rows swap places in the chain (through a free slot: seq is unique).
    for seq, to in ((2, 99), (3, 2), (99, 3)):
        _sql(database, f"UPDATE audit_events SET seq = {to} WHERE seq = {seq}")  # noqa: S608
    reordered = run_in_process(["audit", "verify"], env)
    assert reordered.returncode == 1
    assert "audit chain broken at row 3" in reordered.stderr
    assert "moved" in reordered.stderr
    for seq, to in ((2, 99), (3, 2), (99, 3)):
        _sql(database, f"UPDATE audit_events SET seq = {to} WHERE seq = {seq}")  # noqa: S608
    assert run_in_process(["audit", "verify"], env).returncode == 0

    _sql(database, "UPDATE audit_events SET type = 'admin.deleted' WHERE id = 2")
    edited = run_in_process(["audit", "verify"], env)
    assert edited.returncode == 1
    assert "audit chain broken at row 2" in edited.stderr
    assert "edited" in edited.stderr

    _sql(database, "DELETE FROM audit_events WHERE id = 2")
    deleted = run_in_process(["audit", "verify"], env)
    assert deleted.returncode == 1
    assert "audit chain broken at row 3" in deleted.stderr
    assert "deleted" in deleted.stderr


def test_unknown_audit_subcommand_exits_non_zero(tmp_path: Path) -> None:
    result = run_keyturn(["audit", "bogus"], keyturn_env(tmp_path / "data"))
    assert result.returncode != 0
    assert "No such" in result.stderr


def test_prune_respects_retention_and_keeps_verify_green(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (CliRunner) so the clock can move: rows older than the retention go."""
    for name in [name for name in os.environ if name.startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KEYTURN_AUDIT_RETENTION_DAYS", "30")
    for name, value in LOW_ARGON2.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

    with time_machine.travel(start, tick=False):
        created = runner.invoke(
            app,
            ["users", "create-admin", "--email", "old@example.com", "--password-stdin"],
            input=PASSWORD + "\n",
        )
        assert created.exit_code == 0, created.output
        nothing = runner.invoke(app, ["audit", "prune"])
        assert nothing.exit_code == 0, nothing.output
        assert "nothing to prune" in nothing.output

    with time_machine.travel(start + timedelta(days=31), tick=False):
        created = runner.invoke(
            app,
            ["users", "create-admin", "--email", "new@example.com", "--password-stdin"],
            input=PASSWORD + "\n",
        )
        assert created.exit_code == 0, created.output
        pruned = runner.invoke(app, ["audit", "prune"])
        assert pruned.exit_code == 0, pruned.output
        assert "pruned 1 rows through chain position 1; checkpoint row 3" in pruned.output

    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "audit chain intact: 2 rows" in verified.output

    database = tmp_path / "data" / "keyturn.db"
    _sql(database, "DELETE FROM audit_events WHERE id = 2")
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "audit chain broken at row 3" in broken.output
