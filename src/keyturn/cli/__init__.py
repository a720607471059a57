"""The ``keyturn`` command line (typer): serve, migrate, users."""
