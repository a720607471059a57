"""Bounded HTTP load for the fault tests (issue 17 item 3): N clients for S seconds.

Each client is one ``httpx.AsyncClient`` (its own connection pool) running a *scenario*
in a loop until the time is up: one "request unit" per call (a login, a refresh, a
``/v1/me`` with a prepared token, a signup...). The scenario sends its requests through
:meth:`Step.request`, which records every answer (status, ``Retry-After``, a tag such as
the signed-up address) or transport failure (by exception type) instead of raising, so
a fault in the middle of a run is counted, not fatal. Nothing here judges timings: the
tests assert on counts and on what the answers were.

The load runs on its own thread with its own event loop, so a test can break things
(``kill -9``, ``pg_ctl stop``) from the main thread while it runs::

    with start_load(url, scenario, clients=20, seconds=8) as run:
        time.sleep(2)
        cluster.kill_replica(1)
    result = run.result()
    print(result.summary())
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["LoadResult", "LoadRun", "Record", "Scenario", "Step", "run_load", "start_load"]

# A request stuck longer than this counts as a failure (ReadTimeout), not a hang of the test.
REQUEST_TIMEOUT = 20.0
# Bound on waiting for the load thread after its own deadline (in-flight requests finish).
JOIN_MARGIN = REQUEST_TIMEOUT + 10.0


@dataclass(frozen=True)
class Record:
    """One request of the load: what was asked and what came back (or what broke)."""

    name: str
    client: int
    started: float  # time.monotonic(), for ordering against a fault, never asserted
    ended: float
    status: int | None = None  # None: no HTTP answer (see ``error``)
    error: str | None = None  # the exception type's name
    retry_after: str | None = None
    tag: str | None = None
    body: str = ""  # the first bytes of a 5xx answer, for the failure message

    @property
    def outcome(self) -> int | str:
        """The status code, or the exception type's name when no answer came."""
        return self.status if self.status is not None else str(self.error)

    @property
    def failed(self) -> bool:
        """A transport error or a 5xx answer."""
        return self.status is None or self.status >= 500


@dataclass
class LoadResult:
    """Every record of one run, with counts for the summary and the asserts."""

    clients: int
    seconds: float
    records: list[Record] = field(default_factory=list)

    @property
    def counts(self) -> Counter[int | str]:
        """Answers by status code, plus transport failures by exception type."""
        return Counter(record.outcome for record in self.records)

    @property
    def by_name(self) -> Counter[tuple[str, int | str]]:
        return Counter((record.name, record.outcome) for record in self.records)

    @property
    def failures(self) -> list[Record]:
        return [record for record in self.records if record.failed]

    def with_status(self, status: int) -> list[Record]:
        return [record for record in self.records if record.status == status]

    def tags(self, name: str, status: int) -> list[str]:
        """The tags of the ``name`` requests answered ``status`` (e.g. signed-up emails)."""
        return [r.tag for r in self.records if r.name == name and r.status == status and r.tag]

    def summary(self) -> str:
        """Requests in total, then counts by status and by (request, outcome)."""
        counts = ", ".join(f"{key}: {n}" for key, n in sorted(self.counts.items(), key=str))
        lines = [
            f"{len(self.records)} requests from {self.clients} clients in {self.seconds:g} s; "
            f"{len(self.failures)} failed (5xx or no answer)",
            f"  by outcome: {counts}",
        ]
        for (name, outcome), n in sorted(self.by_name.items(), key=str):
            lines.append(f"  {name} {outcome}: {n}")
        return "\n".join(lines)


class Step:
    """What a scenario gets: the client's ``httpx.AsyncClient`` and a recorder."""

    def __init__(self, http: httpx.AsyncClient, client: int, records: list[Record]) -> None:
        self.http = http
        self.client = client
        self.iteration = 0
        self._records = records

    async def request(
        self, name: str, method: str, url: str, *, tag: str | None = None, **kwargs: Any
    ) -> httpx.Response | None:
        """Sends one request and records it; None when no answer came (recorded too)."""
        started = time.monotonic()
        try:
            answer = await self.http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            self._records.append(
                Record(name, self.client, started, time.monotonic(), error=type(error).__name__)
            )
            return None
        self._records.append(
            Record(
                name,
                self.client,
                started,
                time.monotonic(),
                status=answer.status_code,
                retry_after=answer.headers.get("retry-after"),
                tag=tag,
                body=answer.text[:300] if answer.status_code >= 500 else "",
            )
        )
        return answer


Scenario = Callable[[Step], Awaitable[None]]


async def _client_loop(
    url: str,
    scenario: Scenario,
    index: int,
    deadline: float,
    records: list[Record],
    headers: Mapping[str, str],
) -> None:
    async with httpx.AsyncClient(
        base_url=url, timeout=REQUEST_TIMEOUT, headers=dict(headers)
    ) as http:
        step = Step(http, index, records)
        while time.monotonic() < deadline:
            await scenario(step)
            step.iteration += 1


async def _load(
    url: str,
    scenario: Scenario,
    clients: int,
    seconds: float,
    headers: Callable[[int], Mapping[str, str]],
) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        *(
            _client_loop(url, scenario, index, deadline, records, headers(index))
            for index in range(clients)
        )
    )
    return records


def _no_headers(_index: int) -> Mapping[str, str]:
    return {}


class LoadRun:
    """A load running on its own thread; :meth:`result` waits for it (bounded)."""

    def __init__(
        self,
        url: str,
        scenario: Scenario,
        *,
        clients: int,
        seconds: float,
        headers: Callable[[int], Mapping[str, str]] = _no_headers,
    ) -> None:
        self._result = LoadResult(clients=clients, seconds=seconds)
        self._error: BaseException | None = None
        self._seconds = seconds

        def work() -> None:
            try:
                records = asyncio.run(_load(url, scenario, clients, seconds, headers))
                self._result.records.extend(records)
            except BaseException as error:  # handed to the test thread by result()
                self._error = error

        self._thread = threading.Thread(target=work, name="load", daemon=True)
        self._thread.start()

    def result(self) -> LoadResult:
        """The records once every client stopped; a scenario's own bug is raised here."""
        self._thread.join(timeout=self._seconds + JOIN_MARGIN)
        if self._thread.is_alive():
            raise AssertionError("the load did not stop after its deadline")
        if self._error is not None:
            raise self._error
        return self._result


@contextmanager
def start_load(
    url: str,
    scenario: Scenario,
    *,
    clients: int,
    seconds: float,
    headers: Callable[[int], Mapping[str, str]] = _no_headers,
) -> Iterator[LoadRun]:
    """Starts the load; on leaving the block it has stopped (its own deadline)."""
    run = LoadRun(url, scenario, clients=clients, seconds=seconds, headers=headers)
    try:
        yield run
    finally:
        run.result()


def run_load(
    url: str,
    scenario: Scenario,
    *,
    clients: int,
    seconds: float,
    headers: Callable[[int], Mapping[str, str]] = _no_headers,
) -> LoadResult:
    """Runs ``clients`` loops of ``scenario`` against ``url`` for ``seconds``; blocks."""
    return LoadRun(url, scenario, clients=clients, seconds=seconds, headers=headers).result()
