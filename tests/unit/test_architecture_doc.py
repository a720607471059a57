"""The architecture document and the other docs stay true to the tree (issue 14 item 7).

The endpoint map must list every route the app serves, with the module that serves it;
the GraphQL and CLI tables every root field and command; every service named there must
exist. Every backticked ``file.py`` or ``file.py::test_name`` in the docs and READMEs must
resolve, and so must every local link (file and heading). A failure names what to fix.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import graphql
import pytest
import typer.main
from fastapi.routing import iter_route_contexts

from keyturn.api.graphql.schema import build_schema
from keyturn.app import create_app
from keyturn.cli.main import app as cli_app
from keyturn.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "keyturn"
TESTS = ROOT / "tests"
DOC = ROOT / "docs" / "technical" / "2026-12-05_backend_architecture.md"

TICKED = re.compile(r"`([^`\n]+)`")
METHODS = re.compile(r"^[A-Z]+(?:, [A-Z]+)*$")
# "`Class.method`, `Class.other` (`services/pkg/module.py`)": names and the module holding them.
SERVICE = re.compile(r"((?:`[A-Za-z_][\w.]*`(?:, )?)+) \(`([\w/]+\.py)`\)")
# The stylesheet's name carries a hash of its content.
CONVERTOR = re.compile(r"\{(\w+):\w+\}")
HASHED = re.compile(r"keyturn\.[0-9a-f]+\.css$")
HASHED_SCRIPT = re.compile(r"webauthn\.[0-9a-f]+\.js$")
# Illustrations in the docs, not paths in the tree.
EXAMPLES = {"module.py", "versions/0003_short_description.py", "services/mfa/"}


def rows() -> Iterator[list[str]]:
    """The cells of every table row of the architecture document (header rows too)."""
    for line in DOC.read_text("utf-8").splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def ticked(cell: str) -> str:
    found = TICKED.findall(cell)
    return found[0] if found else cell


def source_path(module: str) -> str:
    """``keyturn.api.rest.auth`` -> ``api/rest/auth.py`` (relative to ``src/keyturn``)."""
    file = sys.modules[module].__file__
    assert file is not None
    return Path(file).relative_to(SRC).as_posix()


def documented_routes() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for cells in rows():
        if METHODS.match(cells[0]):
            for method in cells[0].split(", "):
                key = (method, ticked(cells[1]))
                assert key not in found, f"{key} is listed twice"
                found[key] = ticked(cells[2])
    return found


def served_routes(tmp_path: Path) -> dict[tuple[str, str], str | None]:
    """Every (method, path) the dev app serves and the module of its endpoint.

    Dev settings: the dev-only routes (/docs, /openapi.json, the dev mailbox) are served
    too, so the map covers them. HEAD is left out: it is served wherever GET is.
    """
    settings = load_settings(
        env="dev",
        data_dir=tmp_path,
        secret_key=["k" * 43],
        database_url=f"sqlite+aiosqlite:///{tmp_path}/keyturn.db",
    )
    found: dict[tuple[str, str], str | None] = {}
    for context in iter_route_contexts(create_app(settings).routes):
        endpoint: Any = getattr(context.original_route, "endpoint", None)
        module = getattr(endpoint, "__module__", "")
        owner = source_path(module) if module.startswith("keyturn.") else None
        path = HASHED.sub("keyturn.{hash}.css", str(context.path))
        path = HASHED_SCRIPT.sub("webauthn.{hash}.js", path)
        # As the OpenAPI document writes it: `{passkey_id:uuid}` is `{passkey_id}`.
        path = CONVERTOR.sub(r"{\1}", path)
        for method in set(context.methods or ()) - {"HEAD"}:
            found[(method, path)] = owner
    return found


def test_every_route_is_in_the_endpoint_map_with_its_module(tmp_path: Path) -> None:
    documented = documented_routes()
    served = served_routes(tmp_path)
    missing = [
        f"| {method} | `{path}` | `{owner}` | ... |"
        for (method, path), owner in sorted(served.items())
        if (method, path) not in documented
    ]
    assert not missing, "add to the endpoint map:\n" + "\n".join(missing)
    stale = sorted(set(documented) - set(served))
    assert not stale, f"the endpoint map lists routes the app does not serve: {stale}"
    moved = [
        f"{method} {path}: served by `{owner}`, the map says `{documented[(method, path)]}`"
        for (method, path), owner in sorted(served.items())
        if owner is not None and documented[(method, path)] != owner
    ]
    assert not moved, "\n".join(moved)


def test_every_graphql_root_field_is_in_the_graphql_table() -> None:
    schema = graphql.build_schema(build_schema(introspection=True).as_str())
    assert schema.query_type is not None
    assert schema.mutation_type is not None
    served = {("query", name) for name in schema.query_type.fields} | {
        ("mutation", name) for name in schema.mutation_type.fields
    }
    documented = {
        (cells[0], ticked(cells[1])) for cells in rows() if cells[0] in {"query", "mutation"}
    }
    assert served == documented


def commands(command: Any, words: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in subcommands.items():
            yield from commands(sub, (*words, name))
    else:
        yield " ".join(words), source_path(command.callback.__module__)


def test_every_cli_command_is_in_the_cli_table() -> None:
    served = dict(commands(typer.main.get_command(cli_app), ("keyturn",)))
    documented = {
        ticked(cells[0]): ticked(cells[1]) for cells in rows() if cells[0].startswith("`keyturn ")
    }
    assert served == documented


def test_every_service_named_in_the_tables_exists() -> None:
    named = [
        (symbol, module)
        for cells in rows()
        for cell in cells
        for symbols, module in SERVICE.findall(cell)
        for symbol in TICKED.findall(symbols)
    ]
    assert len(named) > 50
    for symbol, module in named:
        target: object = importlib.import_module("keyturn." + module[:-3].replace("/", "."))
        for part in symbol.split("."):
            assert hasattr(target, part), f"`{symbol}` is not in `{module}`"
            target = getattr(target, part)


def moved_to(path: str) -> str:
    """For a path that no longer resolves: the files that now carry its name, as a hint."""
    found = [
        match.relative_to(base).as_posix()
        for base in (SRC, TESTS)
        for match in sorted(base.rglob(Path(path).name))
    ]
    return f" (now `{'`, `'.join(found)}`?)" if found else ""


def test_every_path_in_the_architecture_doc_exists() -> None:
    paths = [
        token
        for token in TICKED.findall(DOC.read_text("utf-8"))
        if re.fullmatch(r"\w[\w./]*(?:\.py|/)", token) and token not in EXAMPLES
    ]
    assert len(paths) > 100
    missing = [
        path + moved_to(path)
        for path in paths
        if not (SRC / path).exists() and not (ROOT / path).exists()
    ]
    assert not missing, "\n".join(missing)


# -- Every doc and README ----------------------------------------------------------------

# `path.py`, `path.py::test_name`, `::test_name` (the file named last), `::test[param]`.
REFERENCE = re.compile(r"^((?:[\w.-]+/)*[\w.-]+\.py)?(?:::(\w+)(?:\[[^\]]*\])?)?$")


def documents() -> list[Path]:
    return [
        *sorted((ROOT / "docs").rglob("*.md")),
        ROOT / "README.md",
        *sorted(SRC.rglob("README.md")),
    ]


@cache
def basenames() -> Counter[str]:
    return Counter(path.name for base in (ROOT / "src", TESTS) for path in base.rglob("*.py"))


def resolve(path: str, document: Path, names: Counter[str]) -> Path | None:
    """A path relative to the repository, ``src/keyturn``, ``tests`` or the document.

    A bare file name resolves when one file in the tree has it; the security report writes
    ``security/test_attack_x.py`` as ``attack_x.py``.
    """
    for base in (document.parent, ROOT, SRC, TESTS):
        if (base / path).is_file():
            return base / path
    if "/" not in path:
        if (TESTS / "security" / f"test_{path}").is_file():
            return TESTS / "security" / f"test_{path}"
        if names[path] == 1:
            return next(p for base in (ROOT / "src", TESTS) for p in base.rglob(path))
    return None


def broken_references(document: Path, names: Counter[str]) -> Iterator[str]:
    last: Path | None = None
    for number, line in enumerate(document.read_text("utf-8").splitlines(), 1):
        for token in TICKED.findall(line):
            match = REFERENCE.match(token)
            if match is None or token in EXAMPLES or not any(match.groups()):
                continue
            where = f"{document.relative_to(ROOT)}:{number} `{token}`"
            path, test = match.groups()
            if path is not None:
                last = resolve(path, document, names)
                if last is None:
                    yield f"{where}: no such file{moved_to(path)}"
                    continue
            if test is not None:
                if last is None:
                    yield f"{where}: no file named before it"
                elif not re.search(rf"def {test}\b", last.read_text("utf-8")):
                    yield f"{where}: no {test} in {last.relative_to(ROOT)}"


@pytest.mark.parametrize(
    "document", documents(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_file_and_test_a_document_names_exists(document: Path) -> None:
    broken = list(broken_references(document, basenames()))
    assert not broken, "\n".join(broken)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", document.read_text("utf-8"), flags=re.MULTILINE)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings
    }


@pytest.mark.parametrize(
    "document", documents(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_local_link_of_a_document_resolves(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text("utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        destination = document.parent / path if path else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, "\n".join(broken)
