"""Local static rules over src/keyturn, as an AST walk (the same rules as .semgrep/keyturn.yml).

semgrep itself is not a dev dependency: its wheel carries a large native engine, and the
rules below are small enough for Python's own ``ast``. ``.semgrep/keyturn.yml`` states the
same rules for anyone who runs semgrep (``semgrep --config .semgrep/ --metrics=off``);
``test_semgrep_rules_and_ast_rules_are_the_same_set`` keeps the two lists in step.

Each rule is proven able to fail: ``BAD`` holds a snippet per rule that must be reported
and ``GOOD`` snippets that must not.

ASVS v5.0.0-11.5.1 (CSPRNG for security values), v5.0.0-9.1.2 (an allow-list of JWT
algorithms), v5.0.0-1.2.4 (parameterized queries), v5.0.0-1.5.2 (no unsafe
deserialization), v5.0.0-11.4.1 (approved hash functions), v5.0.0-11.2.4
(constant-time comparison).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "keyturn"
SEMGREP_RULES = ROOT / ".semgrep" / "keyturn.yml"
# Where security values are made: random here must be ``secrets``.
RANDOM_FREE = ("security", "services")
JOSE_DECODERS = {
    "decode",
    "deserialize_compact",
    "deserialize_json",
    "decrypt_compact",
    "decrypt_json",
}
JOSE_MODULES = {"jwt", "jws", "jwe"}
SQL_SINKS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}
WEAK_HASHES = {"md5", "sha1"}
SECRET_NAME = re.compile(r"(^|_)(digest|hexdigest|signature|mac|hmac|token_hash)$")


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def is_built_string(node: ast.AST) -> bool:
    """An f-string, ``"..." % x``, ``"..." + x`` or ``"...".format(x)``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        sides = (node.left, node.right)
        return any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format" and isinstance(node.func.value, ast.Constant)
    return False


def looks_secret(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("digest", "hexdigest")
    name = dotted(node).rsplit(".", 1)[-1]
    return bool(name) and bool(SECRET_NAME.search(name))


def check(tree: ast.AST, path: str, *, random_free: bool) -> Iterator[Finding]:
    def found(rule: str, node: ast.AST, message: str) -> Finding:
        return Finding(rule, path, getattr(node, "lineno", 0), message)

    for node in ast.walk(tree):
        if random_free:
            if isinstance(node, ast.Import) and any(alias.name == "random" for alias in node.names):
                yield found("keyturn-no-random-in-security", node, "use secrets, not random")
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                yield found("keyturn-no-random-in-security", node, "use secrets, not random")
        if (
            isinstance(node, ast.Compare)
            and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
            and any(looks_secret(side) for side in (node.left, *node.comparators))
        ):
            yield found(
                "keyturn-constant-time-compare",
                node,
                "compare digests/signatures with hmac.compare_digest",
            )
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        parts = name.split(".")
        last = parts[-1]
        if last in JOSE_DECODERS and len(parts) > 1 and parts[-2] in JOSE_MODULES:
            algorithms = keyword(node, "algorithms")
            if algorithms is None or (
                isinstance(algorithms, ast.Constant) and algorithms.value is None
            ):
                yield found(
                    "keyturn-jwt-decode-needs-algorithms",
                    node,
                    f"{name}() without an explicit algorithms allow-list",
                )
            elif isinstance(algorithms, ast.List | ast.Tuple | ast.Set) and any(
                isinstance(item, ast.Constant) and str(item.value).lower() == "none"
                for item in algorithms.elts
            ):
                yield found("keyturn-jwt-decode-needs-algorithms", node, "alg 'none' allowed")
            options = keyword(node, "options")
            if isinstance(options, ast.Dict) and any(
                isinstance(key, ast.Constant)
                and key.value == "verify_signature"
                and isinstance(value, ast.Constant)
                and value.value is False
                for key, value in zip(options.keys, options.values, strict=True)
            ):
                yield found("keyturn-jwt-decode-needs-algorithms", node, "signature not verified")
        if last in SQL_SINKS and node.args and is_built_string(node.args[0]):
            yield found("keyturn-no-string-built-sql", node, f"{last}() of a built string")
        if name in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "marshal.loads"):
            yield found("keyturn-no-pickle", node, f"{name}() deserializes code")
        if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            yield found("keyturn-yaml-safe-load", node, f"{name}() is not safe_load")
        if name == "yaml.load":
            loader = keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or dotted(loader).rsplit(".", 1)[-1] not in (
                "SafeLoader",
                "CSafeLoader",
            ):
                yield found("keyturn-yaml-safe-load", node, "yaml.load without SafeLoader")
        weak = last in WEAK_HASHES and parts[0] == "hashlib"
        if name == "hashlib.new" and node.args and isinstance(node.args[0], ast.Constant):
            weak = str(node.args[0].value).lower() in WEAK_HASHES
        if weak:
            flag = keyword(node, "usedforsecurity")
            if not (isinstance(flag, ast.Constant) and flag.value is False):
                yield found("keyturn-no-weak-hash", node, f"{name}() is not for security use")


def check_source(source: str, path: str = "<snippet>", *, random_free: bool = True) -> list[str]:
    return [finding.rule for finding in check(ast.parse(source), path, random_free=random_free)]


def scan() -> list[Finding]:
    findings: list[Finding] = []
    for file in sorted(SOURCE.rglob("*.py")):
        relative = file.relative_to(SOURCE)
        random_free = relative.parts[0] in RANDOM_FREE
        tree = ast.parse(file.read_text("utf-8"), str(file))
        findings += check(tree, str(file.relative_to(ROOT)), random_free=random_free)
    return findings


BAD = {
    "keyturn-no-random-in-security": [
        "import random\nrandom.choice('ab')",
        "from random import randint",
    ],
    "keyturn-jwt-decode-needs-algorithms": [
        "jwt.decode(token, key)",
        "jwt.decode(token, key, algorithms=None)",
        "jwt.decode(token, key, algorithms=['none'])",
        "jwt.decode(t, k, algorithms=['RS256'], options={'verify_signature': False})",
        "joserfc.jwt.decode(value, key)",
        "jws.deserialize_compact(value, key)",
    ],
    "keyturn-no-string-built-sql": [
        "text(f'SELECT * FROM users WHERE email = {email}')",
        "await db.execute('SELECT * FROM t WHERE id = %s' % user_id)",
        "conn.execute('DELETE FROM t WHERE id = ' + value)",
        "cursor.execute('SELECT {}'.format(name))",
    ],
    "keyturn-no-pickle": ["pickle.loads(blob)", "pickle.load(handle)"],
    "keyturn-yaml-safe-load": [
        "yaml.load(stream)",
        "yaml.load(stream, Loader=yaml.Loader)",
        "yaml.unsafe_load(stream)",
    ],
    "keyturn-no-weak-hash": ["hashlib.md5(data)", "hashlib.sha1(x).digest()", "hashlib.new('md5')"],
    "keyturn-constant-time-compare": [
        "if expected_digest == given: pass",
        "ok = hmac.new(k, m, 'sha256').digest() == mac",
        "ok = token.signature != computed",
    ],
}
GOOD = [
    "import secrets\nsecrets.token_urlsafe(32)",
    "jwt.decode(token, key, algorithms=['ES256'])",
    "data.decode('utf-8')",
    "base64.urlsafe_b64decode(raw).decode()",
    "text('SELECT 1')",
    "await db.execute(select(User).where(User.email == email))",
    "cursor.execute('PRAGMA foreign_keys=ON')",
    "text(f'SELECT 1')",
    "yaml.safe_load(stream)",
    "yaml.load(stream, Loader=yaml.SafeLoader)",
    "hashlib.sha256(data).hexdigest()",
    "hashlib.md5(data, usedforsecurity=False)",
    "hmac.compare_digest(expected_digest, given)",
    "if row.prev_hash == GENESIS: pass",
    "if token.purpose != purpose: pass",
    "if user.password_hash is None: pass",
]


@pytest.mark.parametrize(
    ("rule", "snippet"), [(rule, snippet) for rule, snippets in BAD.items() for snippet in snippets]
)
def test_each_rule_reports_its_bad_pattern(rule: str, snippet: str) -> None:
    assert rule in check_source(snippet), f"{rule} missed: {snippet!r}"


@pytest.mark.parametrize("snippet", GOOD)
def test_safe_patterns_are_not_reported(snippet: str) -> None:
    assert check_source(snippet) == []


def test_random_is_allowed_outside_security_code() -> None:
    assert check_source("import random", random_free=False) == []


def test_source_tree_breaks_no_rule() -> None:
    """Every rule above holds over src/keyturn."""
    files = list(SOURCE.rglob("*.py"))
    assert len(files) > 20, f"found only {len(files)} files under {SOURCE}"
    findings = scan()
    assert not findings, "\n".join(map(str, findings))


def test_semgrep_rules_and_ast_rules_are_the_same_set() -> None:
    """.semgrep/keyturn.yml states exactly the rules this module enforces."""
    document = yaml.safe_load(SEMGREP_RULES.read_text("utf-8"))
    assert {rule["id"] for rule in document["rules"]} == set(BAD)
