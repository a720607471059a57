"""The README is a test (issue 13, items 10 and 11).

The shell blocks under the README's "5-minute tour" heading run in order, in one bash
session (variables carry over from block to block, as in the reader's terminal), against
a live ``keyturn serve`` on a free port with a fresh data dir and default settings. Every
command must exit 0, and a ``#>`` line in a block is what the commands before it (since
the previous ``#>`` group) print: compared exactly, ``...`` standing for anything (ids,
tokens, times). Changing the README without the code, or the code without the README,
fails here.

The one line a reader types by hand, ``read -r VERIFY`` (pasting the token of the
verification mail from the ``make run`` terminal), gets that token from the console
mailer's output that the test captures, exactly where the reader would look.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.processes import Server, keyturn_env, keyturn_executable, wait_healthy
from keyturn.config import Settings
from net import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "technical" / "2026-12-05_backend_configuration-and-operations.md"
TOUR_HEADING = "## 5-minute tour"
# The address the README shows; the test's server listens elsewhere.
README_BASE_URL = "http://127.0.0.1:8000"
EXPECTED_PREFIX = "#> "
STEP_DEADLINE = 120.0  # a bound, not an expectation: nothing asserts how long a step took
MAIL_DEADLINE = 60.0
VERIFY_SUBJECT = "Subject: Confirm your email address"


@dataclass(frozen=True)
class Step:
    """Shell lines and the output the README shows for them (``None``: none shown)."""

    script: str
    expected: str | None


def tour_blocks(readme: str) -> list[str]:
    """The bodies of the ```` ```sh ```` blocks of the tour section, in order."""
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    section = readme[start : end if end != -1 else len(readme)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def tour_steps(block: str) -> list[Step]:
    """Splits a block at its ``#>`` groups: each group closes the step before it."""
    steps: list[Step] = []
    script: list[str] = []
    expected: list[str] = []
    for line in block.splitlines():
        if line.startswith(EXPECTED_PREFIX):
            expected.append(line[len(EXPECTED_PREFIX) :])
            continue
        if expected:
            steps.append(Step("\n".join(script), "\n".join(expected)))
            script, expected = [], []
        script.append(line)
    if expected:
        steps.append(Step("\n".join(script), "\n".join(expected)))
    elif any(line.strip() and not line.lstrip().startswith("#") for line in script):
        steps.append(Step("\n".join(script), None))
    return steps


def shown_output_pattern(expected: str) -> re.Pattern[str]:
    """The README's shown output as a regex: literal text, ``...`` matching anything."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split("...")), re.DOTALL)


class BashSession:
    """One long-lived bash, fed step by step, like the reader's second terminal.

    Each step runs as a ``{ ...; }`` group in the session's own shell (so assignments
    persist) with its stdin, stdout and stderr redirected to per-step files; its exit
    status lands in a file the test waits for.
    """

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self._workdir = workdir
        self._count = 0
        self._process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # pipefail: a failing curl before `| jq` fails the step instead of hiding.
        self._send("set -o pipefail\n")

    def _send(self, text: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(text)
        self._process.stdin.flush()

    def run(self, script: str, stdin: str = "") -> tuple[int, str, str]:
        """Runs ``script``; returns (exit status, stdout, stderr)."""
        self._count += 1
        base = self._workdir / f"step{self._count:02d}"
        (base.with_suffix(".in")).write_text(stdin, encoding="utf-8")
        rc_file = base.with_suffix(".rc")
        self._send(
            f"{{\n{script}\n}} >{base}.out 2>{base}.err <{base}.in; "
            f"echo $? >{base}.rc.tmp && mv {base}.rc.tmp {rc_file}\n"
        )
        deadline = time.monotonic() + STEP_DEADLINE
        while not rc_file.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the tour's shell never finished:\n{script}")
            time.sleep(0.05)
        status = int(rc_file.read_text(encoding="utf-8"))
        out = base.with_suffix(".out").read_text(encoding="utf-8")
        err = base.with_suffix(".err").read_text(encoding="utf-8")
        return status, out, err

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


def verification_token(server: Server) -> str:
    """The token of the verification mail, from the console mailer's output (stderr)."""
    deadline = time.monotonic() + MAIL_DEADLINE
    while True:
        err = server.stderr_path.read_text(encoding="utf-8", errors="replace")
        mail_start = err.find(VERIFY_SUBJECT)
        if mail_start != -1:
            found = re.search(r"^Token: (\S+)$", err[mail_start:], flags=re.MULTILINE)
            if found:
                return found.group(1)
        if time.monotonic() > deadline:
            raise AssertionError(f"no verification mail on the console\n{server.output()}")
        time.sleep(0.05)


@pytest.fixture
def tour_server(tmp_path: Path) -> Iterator[Server]:
    """``keyturn serve`` with default settings on a free port and a fresh data dir.

    No ``KEYTURN_ISSUER``: in dev the issuer follows the listener (issue 13 item 2), so the
    README's PyJWT check, which pins the issuer, must hold on a port other than 8000.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = keyturn_env(
        tmp_path / "data",
        {"KEYTURN_HOST": "127.0.0.1", "KEYTURN_PORT": str(port)},
    )
    stdout_path = tmp_path / "serve.stdout.log"
    stderr_path = tmp_path / "serve.stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [keyturn_executable(), "serve"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = Server(base_url, port, tmp_path / "data", process, stdout_path, stderr_path)
    try:
        wait_healthy(server)
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def test_the_readme_tour_runs_as_written(tour_server: Server, tmp_path: Path) -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:  # .ci/run installs them and fails without them
        pytest.skip(f"the README tour needs {', '.join(missing)} (apt-get install -y jq curl)")
    readme = README.read_text(encoding="utf-8")
    steps = [step for block in tour_blocks(readme) for step in tour_steps(block)]
    assert len(steps) >= 10, "the tour lost its steps"
    workdir = tmp_path / "reader"
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEYTURN_")}
    # `python3` in the tour is the one that has PyJWT: this interpreter's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    shell = BashSession(workdir, env)
    try:
        for step in steps:
            script = step.script.replace(README_BASE_URL, tour_server.base_url)
            typed = ""
            if re.search(r"^read -r VERIFY$", script, flags=re.MULTILINE):
                typed = verification_token(tour_server) + "\n"
            status, out, err = shell.run(script, typed)
            where = f"step:\n{step.script}\nstdout:\n{out}\nstderr:\n{err}"
            assert status == 0, f"exit {status}\n{where}\n{tour_server.output()}"
            if step.expected is not None:
                assert shown_output_pattern(step.expected).fullmatch(out.rstrip("\n")), (
                    f"the README shows:\n{step.expected}\n{where}"
                )
    finally:
        shell.close()


def test_the_tour_covers_the_first_five_minutes() -> None:
    """The steps issue 13 names stay in the tour (a shorter README must not drop them)."""
    tour = "\n".join(tour_blocks(README.read_text(encoding="utf-8")))
    for needle in (
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/me ",
        "/v1/auth/email/verify",
        "/v1/auth/refresh",
        "-X DELETE $KT/v1/me/sessions",
        "/v1/me/api-keys",
        "jwt.decode(",
        "/v1/auth/logout",
    ):
        assert needle in tour, needle


def test_the_tour_fails_when_the_shown_output_is_wrong() -> None:
    """The comparison is not vacuous: a changed value or an extra line does not match."""
    pattern = shown_output_pattern('{"id":"...","email_verified":false}')
    assert pattern.fullmatch('{"id":"5e1c-ab","email_verified":false}')
    assert not pattern.fullmatch('{"id":"5e1c-ab","email_verified":true}')
    assert not shown_output_pattern("204").fullmatch("204\n404")
    steps = tour_steps("A=1\necho $A\n#> 1\necho done")
    assert steps == [Step("A=1\necho $A", "1"), Step("echo done", None)]


def test_the_readme_front_page_stays_under_10_kb() -> None:
    assert len(README.read_bytes()) < 10_000


def test_every_setting_is_in_the_configuration_reference() -> None:
    """DESIGN.md 3a: every ``KEYTURN_*`` setting is listed, with its default and meaning."""
    reference = CONFIG_DOC.read_text(encoding="utf-8")
    missing = [
        f"KEYTURN_{name.upper()}"
        for name in Settings.model_fields
        if f"`KEYTURN_{name.upper()}`" not in reference
    ]
    assert not missing, f"not documented in {CONFIG_DOC.name}: {missing}"
