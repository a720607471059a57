"""The production guide and the deployment files name only what exists (issue 16 item 8).

Every ``KEYTURN_*`` name in the guide, the README, every file under ``deploy/`` and
``compose.yaml`` must be a setting (a ``Settings`` field), the ``_FILE`` form of a secret
setting, or a test-suite variable (``KEYTURN_TEST_*``): a misspelt name in a deployment file
is silently ignored by pydantic-settings, so only this test would notice. Every
``keyturn <command>`` the guide names must answer ``--help``, and every relative link in the
guide must lead to a file (and heading).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from keyturn.cli.main import app as cli_app
from keyturn.config import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "technical" / "2026-12-06_backend_deployment.md"

SETTING_NAME = re.compile(r"KEYTURN_[A-Z0-9_]+")
# "keyturn" then the words that follow it (a command, a group's subcommand, arguments).
COMMAND = re.compile(r"(?<![\w/.-])keyturn((?: [a-z][a-z-]*)+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def known_names() -> frozenset[str]:
    """Every environment variable Keyturn reads: settings and secret files."""
    settings = {f"KEYTURN_{field.upper()}" for field in Settings.model_fields}
    files = {f"KEYTURN_{field.upper()}_FILE" for field in SECRET_FIELDS}
    return frozenset(settings | files)


def unknown_names(text: str, known: frozenset[str]) -> list[str]:
    """The ``KEYTURN_*`` names in ``text`` that Keyturn does not read (tests' own excepted)."""
    names = set(SETTING_NAME.findall(text))
    return sorted(n for n in names if n not in known and not n.startswith("KEYTURN_TEST_"))


def deployment_files() -> Iterator[Path]:
    """The guide, the README, ``compose.yaml`` and everything under ``deploy/`` (when present)."""
    yield GUIDE
    yield ROOT / "README.md"
    if (ROOT / "compose.yaml").is_file():
        yield ROOT / "compose.yaml"
    if (ROOT / "deploy").is_dir():
        yield from sorted(path for path in (ROOT / "deploy").rglob("*") if path.is_file())


def command_paths(text: str, root: Any) -> tuple[set[tuple[str, ...]], list[str]]:
    """The command paths ``text`` names after ``keyturn``, and the names that lead nowhere.

    The first word must be a command; after a group, the next word must be one of its
    subcommands; after a plain command, the rest are its arguments. ``root`` is the click
    group typer builds (typer ships its own click, so it is walked by its ``commands``).
    """
    found: set[tuple[str, ...]] = set()
    unknown: list[str] = []
    for match in COMMAND.finditer(text):
        path: list[str] = []
        command = root
        for word in match.group(1).split():
            subcommands: dict[str, Any] | None = getattr(command, "commands", None)
            if subcommands is None:
                break  # an argument of the command named so far
            sub = subcommands.get(word)
            if sub is None:
                unknown.append(" ".join(["keyturn", *path, word]))
                break
            path.append(word)
            command = sub
        if path:
            found.add(tuple(path))
    return found, unknown


def cli_root() -> Any:
    """The click group behind ``keyturn``."""
    return typer.main.get_command(cli_app)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(document: Path, targets: Iterable[str]) -> list[str]:
    """The relative links of ``document`` that lead to no file (or no such heading)."""
    broken = []
    for target in targets:
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        destination = (document.parent / path) if path else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor
            and destination.suffix == ".md"
            and anchor not in anchors(destination.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize(
    "path", list(deployment_files()), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_keyturn_name_is_a_setting(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    unknown = unknown_names(text, known_names())
    assert not unknown, f"{path.relative_to(ROOT)} names settings Keyturn does not read: {unknown}"


def test_every_command_the_guide_names_exists() -> None:
    paths, unknown = command_paths(GUIDE.read_text(encoding="utf-8"), cli_root())
    assert not unknown, f"no such command: {sorted(set(unknown))}"
    # The guide's runbooks name these; fewer would mean the parsing above broke.
    assert {("migrate",), ("serve",), ("keys", "rotate"), ("secret", "rotate")} <= paths
    runner = CliRunner()
    failed = {}
    for path in sorted(paths):
        result = runner.invoke(cli_app, [*path, "--help"])
        if result.exit_code != 0:
            failed[" ".join(path)] = result.output[-300:]
    assert not failed, f"`keyturn <command> --help` failed: {failed}"


def test_every_relative_link_of_the_guide_resolves() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    targets = LINK.findall(text)
    assert targets, "the guide links no document"
    broken = broken_links(GUIDE, targets)
    assert not broken, "\n".join(broken)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A misspelt setting, the _FILE form of a non-secret, an unknown command and a dead
    link are each reported; the legitimate forms are not."""
    known = known_names()
    text = (
        "KEYTURN_SECRET_KEY_FILE KEYTURN_DATABASE_POOL_SIZE KEYTURN_TEST_DATABASE_URL "
        "KEYTURN_DATABASE_POOLSIZE KEYTURN_ISSUER_FILE"
    )
    assert unknown_names(text, known) == ["KEYTURN_DATABASE_POOLSIZE", "KEYTURN_ISSUER_FILE"]
    found, unknown = command_paths(
        "`keyturn keys rotate --force`, `keyturn keys spin`, `keyturn deploy`, /opt/keyturn venv",
        cli_root(),
    )
    assert found == {("keys", "rotate"), ("keys",)}
    assert unknown == ["keyturn keys spin", "keyturn deploy"]
    page = tmp_path / "page.md"
    page.write_text("# Real heading\n", encoding="utf-8")
    assert broken_links(page, ["page.md#real-heading", "https://example.com/x"]) == []
    assert broken_links(page, ["missing.md", "page.md#nope"]) == [
        "missing.md: no such file",
        "page.md#nope: no such heading",
    ]
