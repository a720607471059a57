"""``--profile``: where a Keyturn scenario's server time goes, sampled with py-spy.

py-spy samples the running ``keyturn serve`` from outside (``--nonblocking``: it never
pauses the process, so the measured run slows by a few percent at most) during the first
measured run of each Keyturn scenario. Each profile is kept as collapsed stacks
(``profile-<date>/<scenario>.txt``, readable by speedscope or flamegraph.pl) and summed up
in ``profile-<date>/summary.md``: the share of samples spent under each layer (inclusive,
so the rows overlap) and the functions with the most samples of their own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.servers import run_command

PY_SPY = Path(sys.executable).with_name("py-spy")
# Pinned like granian: a measuring tool, installed into the project's .venv on first use.
PY_SPY_REQUIREMENT = "py-spy==0.4.3"
SAMPLES_PER_SECOND = 250
# Where the time goes, by the file a frame belongs to; first match wins per frame.
LAYERS = (
    ("server: uvicorn + httptools", r"uvicorn/|httptools"),
    ("Keyturn edge middleware", r"keyturn/api/http/(middleware|hardening|cors|head_requests)"),
    ("Keyturn lean routes", r"keyturn/api/lean/"),
    ("Starlette middleware and routing", r"starlette/(middleware|routing|applications|_exce)"),
    ("FastAPI routing and request handling", r"fastapi/routing\.py"),
    ("FastAPI dependency solving", r"fastapi/dependencies/"),
    ("pydantic", r"pydantic"),
    ("SQLAlchemy", r"sqlalchemy/"),
    ("asyncpg", r"asyncpg/"),
    ("redis-py", r"redis/"),
    ("joserfc", r"joserfc/"),
    ("cryptography", r"cryptography/"),
    ("logging (structlog)", r"structlog/|/logging/"),
    ("prometheus-client", r"prometheus_client/"),
    ("Keyturn services", r"keyturn/services/"),
    ("Keyturn db", r"keyturn/db/"),
    ("Keyturn security", r"keyturn/security/"),
    ("Keyturn infra", r"keyturn/infra/"),
)
_LINE_NUMBER = re.compile(r":\d+\)$")


def ensure_py_spy() -> Path:
    if not PY_SPY.exists():
        print(f"installing {PY_SPY_REQUIREMENT} into the project's .venv (once)", flush=True)
        run_command([sys.executable, "-m", "pip", "install", "--quiet", PY_SPY_REQUIREMENT])
    return PY_SPY


@contextmanager
def sampling(pid: int, output: Path, seconds: float) -> Iterator[None]:
    """py-spy records ``pid`` (and its worker processes) for ``seconds`` into ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(ensure_py_spy()),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        str(SAMPLES_PER_SECOND),
        "--duration",
        str(max(1, int(seconds))),
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.wait(timeout=seconds + 30)


@dataclass
class Profile:
    """One scenario's samples, summed by layer and by innermost function."""

    samples: int = 0
    layers: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Profile:
        profile = cls()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit() or not stack:
                continue
            profile.add(stack.split(";"), int(count))
        return profile

    def add(self, frames: list[str], count: int) -> None:
        self.samples += count
        seen = {name for name, pattern in LAYERS for frame in frames if re.search(pattern, frame)}
        for name in seen:
            self.layers[name] += count
        self.own[_LINE_NUMBER.sub(")", frames[-1])] += count

    def share(self, count: int) -> str:
        return f"{100 * count / self.samples:.1f}%" if self.samples else "n/a"


def summary(profiles: dict[str, Profile], top: int = 10) -> str:
    """Markdown: one layer table for every scenario, then each scenario's top functions."""
    names = list(profiles)
    lines = ["| layer (inclusive share of samples) | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " ---: |" * len(names))
    for layer, _ in LAYERS:
        cells = [profiles[name].share(profiles[name].layers[layer]) for name in names]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("| samples | " + " | ".join(str(profiles[n].samples) for n in names) + " |")
    for name, profile in profiles.items():
        lines += ["", f"**{name}**: functions with the most samples of their own", ""]
        common = profile.own.most_common(top)
        lines += [f"- {profile.share(count)} `{frame}`" for frame, count in common]
    return "\n".join(lines) + "\n"
