"""CPU seconds and resident memory from /proc (Linux), for servers and shared daemons.

The machine is shared by the server under test, its database and cache, and the load
generator, so every scenario records the CPU each of them used: the server's process
tree by pid, PostgreSQL and Redis by process name (every process of that name, so other
users of the same daemons count too), and wrk through the rusage of waited children.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
SHARED_DAEMONS = {"postgres": ("postgres",), "redis": ("redis-server",)}


def _stat(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    head, _, tail = raw.rpartition(")")
    return [head.split("(", 1)[1], *tail.split()]


def _pids() -> Iterable[int]:
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (uvicorn workers, node children)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None:
            children.setdefault(int(fields[2]), []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes (the ones still alive)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            # Fields 14 and 15 of proc(5) (utime, stime); index 0 here is field 2 (comm).
            total += int(fields[12]) + int(fields[13])
    return total / _TICKS


def cpu_by_name(names: Iterable[str]) -> float:
    """CPU seconds of every process whose command name is one of ``names``."""
    wanted = set(names)
    matching = [pid for pid in _pids() if (fields := _stat(pid)) and fields[0] in wanted]
    return cpu_seconds(matching)


def children_cpu_seconds() -> float:
    """CPU seconds of every child this process has waited for (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait),
    so a run can tell its own parties' CPU from everything else on the machine."""
    try:
        fields = [int(v) for v in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / _TICKS


def rss_bytes(pid: int) -> int:
    try:
        pages = int((_PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * _PAGE


@dataclass
class CpuSnapshot:
    """CPU counters at one instant; subtract two to get a scenario's usage."""

    server: float
    daemons: dict[str, float]
    load_generator: float
    machine: float = 0.0

    @classmethod
    def take(cls, server_pids: Iterable[int]) -> CpuSnapshot:
        return cls(
            server=cpu_seconds(server_pids),
            daemons={name: cpu_by_name(comms) for name, comms in SHARED_DAEMONS.items()},
            load_generator=children_cpu_seconds(),
            machine=machine_busy_seconds(),
        )

    def since(self, earlier: CpuSnapshot) -> dict[str, float]:
        used = {"server": self.server - earlier.server, "wrk": self.load_generator}
        used["wrk"] -= earlier.load_generator
        used["machine"] = self.machine - earlier.machine
        for name, value in self.daemons.items():
            # A daemon process that exited in between takes its counter with it: never < 0.
            used[name] = max(0.0, value - earlier.daemons.get(name, 0.0))
        return {name: round(value, 3) for name, value in used.items()}


@dataclass
class RssSampler:
    """Samples the resident size of a process tree in the background; keeps each peak."""

    root: int
    interval: float = 0.2
    peaks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for pid in process_tree(self.root):
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss_bytes(pid))

    def peak_per_process_mb(self) -> float:
        """The largest peak of any one process of the tree (a worker, or the only process)."""
        return round(max(self.peaks.values(), default=0) / 2**20, 1)
