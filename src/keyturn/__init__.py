"""Keyturn: a self-hosted identity and authentication service."""

__version__ = "0.1.0"
