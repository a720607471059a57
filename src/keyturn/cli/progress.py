"""A rich progress display on long jobs when a person watches; silence otherwise.

The display goes to standard error, so the job's own output (stdout) stays clean for a
pipe; when standard error is no terminal (cron, CI, a log file) nothing is drawn at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

Advance = Callable[[int], None]


def _ignore(_count: int) -> None:
    """Nobody watches: nothing to draw."""


@contextmanager
def progress(description: str, unit: str, total: int | None = None) -> Iterator[Advance]:
    """Yields ``advance(n)``: ``n`` more ``unit`` done. Without a ``total`` the bar pulses
    and counts (a listing or a chain walk does not know its length up front); without a
    ``unit`` it only pulses (one long statement)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield _ignore
        return
    counter = MofNCompleteColumn() if total is not None else TextColumn("{task.completed}")
    counted = (counter, TextColumn(unit)) if unit else ()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        *counted,
        TimeElapsedColumn(),
    )
    # Transient: once done, the bar makes way for the job's summary line.
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(count: int) -> None:
            bar.advance(task, count)

        yield advance
