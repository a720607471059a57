"""A PostgreSQL cluster of the test's own (``initdb`` + ``pg_ctl`` in a temp dir, loopback).

Unlike the shared server of ``KEYTURN_TEST_DATABASE_URL``, a private cluster can be
stopped and started again by the test (an outage). PostgreSQL refuses to run as root: as
root every command runs as the ``postgres`` OS user (``runuser``), in a directory that user
may write (``/tmp`` based, not pytest's private ``tmp_path``). ``fsync`` is off (the
cluster lives for one test); commits stay synchronous, so an immediate stop loses nothing
committed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from net import free_port

PG_USER = "postgres"
COMMAND_TIMEOUT = 90.0


def _version(bin_dir: str) -> int:
    number = Path(bin_dir).parent.name
    return int(number) if number.isdigit() else 0


def pg_bin_dir() -> Path | None:
    """The newest Debian ``/usr/lib/postgresql/<n>/bin`` holding ``pg_ctl``, else PATH's."""
    candidates = [
        directory
        for directory in glob.glob("/usr/lib/postgresql/*/bin")
        if Path(directory, "pg_ctl").exists() and Path(directory, "initdb").exists()
    ]
    if candidates:
        return Path(max(candidates, key=_version))
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def unavailable_reason() -> str | None:
    """Why no private cluster can run here, or None when it can."""
    if pg_bin_dir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return "running as root without a 'postgres' OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


@dataclass
class PrivatePostgres:
    """One cluster: ``start()``, ``stop()`` (immediate: an outage, not a shutdown)."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        done = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def init(self) -> None:
        args = ["-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8"]
        self._run("initdb", *args, "--no-locale", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            # No fsync: the OS keeps what was written through a server crash. Commits stay
            # synchronous: an immediate stop is a crash, and an asynchronous commit would
            # lose the last transactions (the outage test would see a signup vanish).
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self.root / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "-o", options, "start"
        )

    def stop(self, *, check: bool = True) -> None:
        """``pg_ctl stop -m immediate``: every backend ends at once, no checkpoint."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=check)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def create_private_postgres() -> PrivatePostgres:
    """Initialises (not starts) a cluster in a new world-writable temp dir on a free port."""
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    # /tmp, not pytest's tmp_path: its parents are private to root, and the postgres user
    # must reach the data directory and write its socket and log here.
    root = Path(tempfile.mkdtemp(prefix="keyturn-pg-", dir="/tmp"))
    os.chmod(root, 0o777)  # noqa: S103  (a throwaway dir for another OS user; no secret in it)
    cluster = PrivatePostgres(bin_dir=bin_dir, root=root, port=free_port())
    cluster.init()
    return cluster


def remove_private_postgres(cluster: PrivatePostgres) -> None:
    cluster.stop(check=False)
    shutil.rmtree(cluster.root, ignore_errors=True)
