"""Helpers shared by the deployment-file tests (compose, Kubernetes, systemd, nginx).

Nothing here starts a container: the files are checked by what runs on our machines
(schema validators, ``kubectl kustomize``, ``systemd-analyze``, ``nginx -t``) and by
semantic checks against Keyturn's own settings and commands.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pytest
import typer

from keyturn.cli.main import app
from keyturn.config import SECRET_FIELDS, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE = "ghcr.io/keyturn/keyturn:0.1.0"

_NAME = re.compile(r"\bKEYTURN_[A-Z0-9_]+\b")


def setting_names() -> frozenset[str]:
    """Every environment variable Keyturn reads: one per Settings field and ``_FILE`` for
    each secret field."""
    fields = {f"KEYTURN_{name.upper()}" for name in Settings.model_fields}
    files = {f"KEYTURN_{name.upper()}_FILE" for name in SECRET_FIELDS}
    return frozenset(fields | files)


def unknown_settings(names: set[str]) -> set[str]:
    """The ``KEYTURN_*`` names among ``names`` that Keyturn does not read."""
    return {name for name in names if name.startswith("KEYTURN_")} - setting_names()


def settings_named_in(text: str) -> set[str]:
    """Every ``KEYTURN_*`` word in ``text`` (a file, comments included)."""
    return set(_NAME.findall(text))


def require_tool(path: str, purpose: str) -> str:
    """``path`` if it is an executable; otherwise fail in CI (``.ci/run`` installs it) or
    skip elsewhere, naming the tool and what it checks."""
    found = shutil.which(path)
    if found:
        return found
    message = f"{path} is missing: {purpose} cannot run"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run installs it; CI must not skip this check)")
    pytest.skip(f"{message} (apt-get install it, or run under CI)")


def keyturn_commands() -> frozenset[str]:
    """The top-level ``keyturn`` commands (the console script runs this Typer app)."""
    return frozenset(typer.main.get_group(app).commands)


def settings_from(
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """``load_settings()`` (with its production checks) on a deploy file's environment.

    Each ``*_FILE`` path is replaced by a file in ``tmp_path`` holding ``secrets[<its file
    name>]``, as the platform would mount it; the data dir moves to ``tmp_path`` too, so
    nothing is written outside the test (with a database URL and a secret key set,
    ``load_settings`` writes nothing there anyway).
    """
    for name in list(os.environ):
        if name.startswith("KEYTURN_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        if name.endswith("_FILE"):
            file = tmp_path / PurePosixPath(value).name
            file.write_text(secrets[file.name] + "\n", encoding="utf-8")
            value = str(file)
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEYTURN_DATA_DIR", str(tmp_path / "data"))
    return load_settings()
