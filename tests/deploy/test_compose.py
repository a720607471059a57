"""compose.yaml (issue 16 item 4): no container engine runs here, so the file is checked
against the compose-spec JSON schema that check-jsonschema vendors, then for what a
schema cannot see: dependencies, settings, secrets, volumes and pinned images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.platform_checks import (
    IMAGE,
    REPO,
    keyturn_commands,
    settings_from,
    settings_named_in,
    unknown_settings,
)

COMPOSE = REPO / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the compose-spec schema it vendors."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_matches_the_compose_spec_schema() -> None:
    result = schema_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    # The check above means something only if the schema refuses unknown keys.
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text(encoding="utf-8").replace("healthcheck:", "healthchek:", 1),
        encoding="utf-8",
    )
    assert schema_check(broken).returncode != 0


def test_every_dependency_exists_and_can_be_waited_for(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in all_services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, target)
    keyturn = all_services["keyturn"]
    assert keyturn["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for backend in ("postgres", "redis", "mailpit"):
        assert keyturn["depends_on"][backend]["condition"] == "service_healthy"


def test_keyturn_and_migrate_run_the_pinned_image(compose: dict[str, Any]) -> None:
    keyturn, migrate = services(compose)["keyturn"], services(compose)["migrate"]
    assert keyturn["image"] == migrate["image"] == IMAGE
    assert keyturn["build"] == "."
    assert migrate["command"] == ["migrate"]
    assert keyturn["healthcheck"]["test"] == ["CMD", "keyturn", "healthcheck"]
    for service in (keyturn, migrate):
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]  # noqa: S108  (the container's mount path, no file)
        assert "keyturn-data:/var/lib/keyturn" in service["volumes"]
    # Above uvicorn's 30 s drain.
    assert keyturn["stop_grace_period"] == "40s"


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_every_keyturn_setting_is_real(compose: dict[str, Any]) -> None:
    # Comments included: a setting named anywhere in the file must exist.
    named = settings_named_in(COMPOSE.read_text(encoding="utf-8"))
    for service in services(compose).values():
        named |= set((service.get("environment") or {}).keys())
    assert named, "no KEYTURN_* setting found"
    assert not unknown_settings(named)


def test_the_evaluation_setup_runs_dev_with_the_tours_issuer(compose: dict[str, Any]) -> None:
    environment = services(compose)["keyturn"]["environment"]
    # Production refuses an http issuer; the README tour talks to http://localhost:8000.
    assert environment["KEYTURN_ENV"] == "dev"
    assert environment["KEYTURN_ISSUER"] == "http://localhost:8000"
    assert environment["KEYTURN_SMTP_URL"] == "smtp://mailpit:1025"
    assert "8000:8000" in services(compose)["keyturn"]["ports"]
    # Metrics only on the host's loopback.
    assert "127.0.0.1:9000:9000" in services(compose)["keyturn"]["ports"]
    redis_command = services(compose)["redis"]["command"]
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"


def test_secrets_and_volumes_are_declared_and_exist(compose: dict[str, Any]) -> None:
    declared_secrets = compose["secrets"]
    declared_volumes = compose["volumes"]
    for name, service in services(compose).items():
        for secret in service.get("secrets", []):
            assert secret in declared_secrets, f"{name}: undeclared secret {secret}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in declared_volumes, f"{name}: undeclared volume {source}"
    for secret in declared_secrets.values():
        assert (REPO / secret["file"]).is_file(), secret["file"]
    # Each *_FILE setting points at a secret mounted into that service.
    for name, service in services(compose).items():
        mounted = {f"/run/secrets/{secret}" for secret in service.get("secrets", [])}
        for variable, value in (service.get("environment") or {}).items():
            if variable.endswith("_FILE"):
                assert value in mounted, f"{name}: {variable}={value} is not a mounted secret"


def test_the_environment_loads_as_keyturn_reads_it(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose mounts secret NAME at /run/secrets/NAME.
    secrets = {
        name: (REPO / secret["file"]).read_text(encoding="utf-8").strip()
        for name, secret in compose["secrets"].items()
    }
    for name in ("migrate", "keyturn"):
        workdir = tmp_path / name
        workdir.mkdir()
        environment = services(compose)[name]["environment"]
        settings = settings_from(environment, secrets, workdir, monkeypatch)
        assert settings.env == "dev"
        assert settings.issuer == "http://localhost:8000"
        assert settings.database_url.startswith("postgresql+asyncpg://keyturn:")
        assert settings.redis_url == "redis://redis:6379/0"
        assert len(settings.secret_key[0]) >= 32


def test_the_commands_exist(compose: dict[str, Any]) -> None:
    commands = keyturn_commands()
    keyturn, migrate = services(compose)["keyturn"], services(compose)["migrate"]
    assert keyturn["command"][0] in commands
    assert migrate["command"][0] in commands
    executable, subcommand = keyturn["healthcheck"]["test"][1:3]
    assert executable == "keyturn"
    assert subcommand in commands
