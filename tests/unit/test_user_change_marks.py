"""Every write in ``keyturn.db`` to a user's row, a user's roles or a role marks the change
(``db/user_changes.py``), so the user caches of every process forget it at commit.

A write that forgot to mark would leave ``GET /v1/me`` answering the old profile on
other replicas for up to the cache's maximum age; this test finds it in the source
before any request could.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

DB = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "db"

# A statement or an ORM object that writes one of the tables a cached profile is made of.
WRITES = re.compile(
    r"\b(?:update|delete|insert|upsert)\((?:UserRow|UserRoleRow|RoleRow)\)"
    r"|\bUserRoleRow\(|\bUserRow\(|\bRoleRow\("
)
MARKS = re.compile(r"self\._changes\.mark(?:_every)?\(")
# Writes no cache can hold an entry for, each with its reason.
EXEMPT = {
    "users.py:SqlUserRepository.add": "a new user: nobody has cached it",
    "roles.py:SqlRoleRepository.add": "a new role: nobody holds it yet",
}


def _functions(path: Path) -> Iterator[tuple[str, str]]:
    source = path.read_text()
    tree = ast.parse(source)
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for node in cls.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.name}:{cls.name}.{node.name}"
                yield name, ast.get_source_segment(source, node) or ""


def _writers() -> dict[str, str]:
    return {
        name: body
        for path in sorted(DB.glob("*.py"))
        for name, body in _functions(path)
        if WRITES.search(body)
    }


def test_every_write_of_a_user_or_a_role_marks_it() -> None:
    writers = _writers()
    unmarked = sorted(
        name for name, body in writers.items() if not MARKS.search(body) and name not in EXEMPT
    )
    assert unmarked == [], f"writes without self._changes.mark(...): {unmarked}"


def test_the_scan_sees_the_writes_it_must() -> None:
    # The scan itself must not go blind (a renamed model, a moved repository).
    writers = _writers()
    for expected in (
        "users.py:SqlUserRepository.update_name",
        "users.py:SqlUserRepository.delete",
        "users.py:SqlUserRepository.grant_role",
        "roles.py:SqlRoleRepository.assign",
        "roles.py:SqlRoleRepository.delete",
        "sessions.py:SqlSessionRepository.revoke_all",
        *EXEMPT,
    ):
        assert expected in writers, expected
