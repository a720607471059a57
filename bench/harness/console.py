"""The one rich console of the harness (wide when the output is a file or a pipe)."""

from __future__ import annotations

from rich.console import Console

console = Console()
if not console.is_terminal:
    # Logs and CI captures: the results table needs ~180 columns, not the 80 assumed.
    console.width = 200
