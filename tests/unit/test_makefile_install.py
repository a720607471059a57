"""`make run` installs the server alone; `make test` adds the dev extra (issue 13 item 9).

``make -n`` prints what each target would run without running it; a virtualenv path in
``tmp_path`` stands for a fresh machine (no stamp yet) or one that ran `make run` before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("mypy", "ruff", "schemathesis", "playwright", "pytest")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry_run(target: str, venv: Path) -> list[str]:
    # Run under `make test`, the parent's MAKEFLAGS/MAKELEVEL would make this a sub-make
    # that prints "Entering/Leaving directory" lines; a clean environment prints none.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _installs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"pip install .*-e ", line)]


def _dev_extra() -> list[str]:
    """The dev extra's package names, read from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev: list[str] = project["optional-dependencies"]["dev"]
    return [re.split(r"[\[=<>~ ]", spec, maxsplit=1)[0] for spec in dev]


def test_make_run_installs_without_the_dev_extra(tmp_path: Path) -> None:
    lines = _dry_run("run", tmp_path / "venv")
    (install,) = _installs(lines)
    assert "-c requirements.lock" in install
    assert install.endswith("-e '.'"), install
    assert "[dev]" not in "\n".join(lines)
    # Nothing else on the way installs a development tool.
    assert not [line for line in lines if any(f"bin/{tool}" in line for tool in DEV_ONLY)]
    assert lines[-2:] == [
        f"{tmp_path / 'venv'}/bin/keyturn migrate",
        f"{tmp_path / 'venv'}/bin/keyturn serve",
    ]


def test_make_test_installs_the_dev_extra_after_make_run(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".run-stamp").touch()  # `make run` happened on this machine
    # The server's install is current: `make run` installs nothing again.
    assert _installs(_dry_run("run", venv)) == []
    (install,) = _installs(_dry_run("test", venv))
    assert "-c requirements.lock" in install
    assert install.endswith("-e '.[dev]'"), install


def test_make_test_on_a_fresh_machine_is_one_command(tmp_path: Path) -> None:
    lines = _dry_run("test", tmp_path / "venv")
    assert any("-m venv" in line for line in lines)
    (install,) = _installs(lines)
    assert install.endswith("-e '.[dev]'")
    assert any("-m pytest" in line for line in lines)


def test_the_dev_extra_holds_the_development_tools() -> None:
    extra = _dev_extra()
    for tool in DEV_ONLY:
        assert tool in extra, extra
