"""Each services package imports another only through that package's public names.

import-linter checks the layers and the forbidden imports (pyproject.toml); what it cannot
say is "``keyturn.services.Y`` but not ``keyturn.services.Y.<module>``", so this test walks
the import statements of every services module.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import keyturn.services

SERVICES = Path(keyturn.services.__file__).parent
PACKAGES = sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").is_file())


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _reaches_into(module: str, own: str | None) -> bool:
    """``module`` is a submodule of a services package other than ``own``."""
    parts = module.split(".")
    return (
        len(parts) > 3
        and parts[:2] == ["keyturn", "services"]
        and parts[2] in PACKAGES
        and parts[2] != own
    )


def _violations(root: Path, own_package: str | None) -> list[str]:
    return [
        f"{path.relative_to(root.parent)}:{line} imports {module}"
        for path in sorted(root.rglob("*.py"))
        for line, module in _imported_modules(path)
        if _reaches_into(module, own_package)
    ]


def test_there_are_capability_packages() -> None:
    assert {"accounts", "admin", "oauth2", "outbox", "signing_keys"} <= set(PACKAGES)


def test_services_packages_import_each_other_only_through_public_names() -> None:
    bad = [v for package in PACKAGES for v in _violations(SERVICES / package, package)]
    assert not bad, "import the name from the package instead:\n" + "\n".join(bad)


def test_the_services_root_modules_import_packages_only_through_public_names() -> None:
    roots = [p for p in SERVICES.glob("*.py") if p.name != "__init__.py"]
    bad = [
        f"{path.name}:{line} imports {module}"
        for path in roots
        for line, module in _imported_modules(path)
        if _reaches_into(module, None)
    ]
    assert not bad, "\n".join(bad)


def test_every_public_name_is_exported() -> None:
    for package in PACKAGES:
        module = importlib.import_module(f"keyturn.services.{package}")
        exported = getattr(module, "__all__", None)
        assert exported, f"keyturn.services.{package} has no __all__"
        missing = [name for name in exported if not hasattr(module, name)]
        assert not missing, f"keyturn.services.{package}.__all__ names missing: {missing}"


def test_a_reach_into_another_package_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "accounts"
    package.mkdir()
    (package / "bad.py").write_text(
        "from keyturn.services.admin.users import AdminUserService\n"
        "from keyturn.services.admin import AdminUserService as Fine\n"
        "from keyturn.services.accounts.sessions import SessionService\n"
    )
    assert _violations(package, "accounts") == [
        "accounts/bad.py:1 imports keyturn.services.admin.users"
    ]
