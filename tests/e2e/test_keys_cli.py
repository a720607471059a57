"""``keyturn keys list``, ``keyturn keys rotate`` and ``keyturn secret rotate`` (DESIGN.md
section 4) on a SQLite file private to the test: ``migrate`` as a real process, the
commands under test through the same Typer app in-process (``run_in_process``)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from e2e.processes import LOW_ARGON2, keyturn_env, run_in_process, run_keyturn
from helpers import TEST_SECRET

pytestmark = pytest.mark.slow

NEW_SECRET = "new-secret-key-9876543210-zyxwvutsrqponmlk"
ROW = re.compile(r"^(\S{43})\s+(ES256|RS256|EdDSA)\s+(next|active|retired|expired)\s", re.M)


CHAIN_ALGS = ("ES256", "RS256")  # KEYTURN_SIGNING_ALG and KEYTURN_ID_TOKEN_ALGS defaults


def _states(output: str) -> dict[str, dict[str, list[str]]]:
    """alg -> state -> kids: one chain per algorithm."""
    chains: dict[str, dict[str, list[str]]] = {}
    for kid, alg, state in ROW.findall(output):
        chains.setdefault(alg, {}).setdefault(state, []).append(kid)
    return chains


def _env(data: Path, secret: str) -> dict[str, str]:
    return keyturn_env(data, {**LOW_ARGON2, "KEYTURN_SECRET_KEY": secret})


def _list(env: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    listed = run_in_process(["keys", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "kid",
        "alg",
        "state",
        "created",
        "activated",
        "retired",
    ]
    return _states(listed.stdout)


def test_keys_list_and_rotate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data, TEST_SECRET)
    assert run_keyturn(["migrate"], env).returncode == 0

    # An empty database gets an active and a next key per algorithm; the next ones are too
    # young to sign.
    early = run_in_process(["keys", "rotate"], env)
    assert early.returncode == 1
    assert "rotation refused" in early.stderr
    assert "may sign from" in early.stderr
    chains = _list(env)
    assert set(chains) == set(CHAIN_ALGS)
    for states in chains.values():
        assert {state: len(kids) for state, kids in states.items()} == {"active": 1, "next": 1}

    # Published long enough (an hour ago, as far as the database knows): every chain rotates.
    with sqlite3.connect(data / "keyturn.db") as connection:
        connection.execute(
            "UPDATE signing_keys SET created_at = '2000-01-01 00:00:00.000000' WHERE state = 'next'"
        )
    rotated = run_in_process(["keys", "rotate"], env)
    assert rotated.returncode == 0, rotated.stderr
    after = _list(env)
    for alg, states in chains.items():
        assert f"{alg} active: {states['next'][0]}" in rotated.stdout
        assert f"{alg} retired: {states['active'][0]}" in rotated.stdout
        assert after[alg]["active"] == states["next"]
        assert after[alg]["retired"] == states["active"]
        assert len(after[alg]["next"]) == 1
        assert f"{alg} next: {after[alg]['next'][0]}" in rotated.stdout

    # An emergency rotation does not wait.
    forced = run_in_process(["keys", "rotate", "--force"], env)
    assert forced.returncode == 0, forced.stderr
    final = _list(env)
    for alg in CHAIN_ALGS:
        assert final[alg]["active"] == after[alg]["next"]
        assert sorted(final[alg]["retired"]) == sorted(after[alg]["retired"] + after[alg]["active"])

    assert run_in_process(["keys", "rotate", "--no-such-flag"], env).returncode != 0


def test_secret_rotate_moves_every_secret_to_the_new_first_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = _env(data, TEST_SECRET)
    assert run_keyturn(["migrate"], old).returncode == 0
    # Creates the active and next keys of both chains (4), then refuses (too young).
    assert run_in_process(["keys", "rotate"], old).returncode == 1
    kids = _list(old)

    ring = _env(data, f"{NEW_SECRET},{TEST_SECRET}")
    first = run_in_process(["secret", "rotate"], ring)
    assert first.returncode == 0, first.stderr
    assert "signing keys: 4 re-encrypted, 0 already current" in first.stdout
    assert "outbox payloads: 0 re-encrypted, 0 already current, 0 unreadable" in first.stdout
    again = run_in_process(["secret", "rotate"], ring)
    assert again.returncode == 0, again.stderr
    assert "signing keys: 0 re-encrypted, 4 already current" in again.stdout

    # The old key can go: the keys open under the new one alone (rotation decrypts them).
    new_only = _env(data, NEW_SECRET)
    with sqlite3.connect(data / "keyturn.db") as connection:
        connection.execute(
            "UPDATE signing_keys SET created_at = '2000-01-01 00:00:00.000000' WHERE state = 'next'"
        )
    rotated = run_in_process(["keys", "rotate"], new_only)
    assert rotated.returncode == 0, rotated.stderr
    now = _list(new_only)
    for alg in CHAIN_ALGS:
        assert now[alg]["active"] == kids[alg]["next"]

    # Whereas a ring missing the key a secret is sealed under refuses, exit 1.
    stale = run_in_process(["secret", "rotate"], old)
    assert stale.returncode == 1
    assert "secret rotation failed" in stale.stderr
