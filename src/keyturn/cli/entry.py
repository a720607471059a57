"""The ``keyturn`` console script.

``keyturn healthcheck`` runs every few seconds in a container (HEALTHCHECK, Kubernetes
probes), so it is dispatched before the rest of the CLI is imported: that import loads the
whole application, about 2 s of CPU a probe. Every other command goes to the full CLI.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["healthcheck"]:
        # Imported here, not at the top: the point of this module is to import only what
        # the probe needs.
        import typer

        from keyturn.cli.healthcheck import healthcheck

        probe = typer.Typer(add_completion=False, rich_markup_mode=None)
        probe.command()(healthcheck)
        typer.main.get_command(probe).main(args=sys.argv[2:], prog_name="keyturn healthcheck")
        return
    from keyturn.cli.main import main as full_cli

    full_cli()
