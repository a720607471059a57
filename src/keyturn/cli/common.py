"""Helpers shared by the command modules: settings that refuse to start, schema check."""

from __future__ import annotations

import asyncio

import typer

from keyturn.config import ConfigError, Settings, load_settings
from keyturn.db.migrate import is_current, upgrade


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"configuration refused: {exc}", err=True)
        raise typer.Exit(2) from exc


def ensure_schema(settings: Settings) -> None:
    """Dev mode migrates by itself; production refuses to run on an old schema."""
    cache = settings.database_statement_cache
    if not settings.is_production:
        asyncio.run(upgrade(settings.database_url, statement_cache=cache))
    elif not asyncio.run(is_current(settings.database_url, statement_cache=cache)):
        typer.echo("the database schema is behind; run `keyturn migrate` first", err=True)
        raise typer.Exit(1)
