"""The rules of the metrics listener's settings (``KEYTURN_METRICS_HOST`` / ``_PORT``),
checked by ``keyturn.config.validate`` and read by the composition root."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ListenerSettings", "metrics_address", "metrics_listener_problems"]


class ListenerSettings(Protocol):
    """The part of ``keyturn.config.Settings`` these rules read."""

    @property
    def metrics_host(self) -> str | None: ...
    @property
    def metrics_port(self) -> int | None: ...
    @property
    def port(self) -> int: ...
    @property
    def workers(self) -> int: ...


def metrics_address(settings: ListenerSettings) -> tuple[str, int] | None:
    """(host, port) of the separate ``/metrics`` listener; None: ``/metrics`` on the API
    port."""
    host, port = settings.metrics_host, settings.metrics_port
    return (host, port) if host is not None and port is not None else None


def metrics_listener_problems(settings: ListenerSettings) -> list[str]:
    """Both settings together, a port of its own, one worker."""
    if settings.metrics_host is None and settings.metrics_port is None:
        return []
    if metrics_address(settings) is None:
        return ["KEYTURN_METRICS_HOST and KEYTURN_METRICS_PORT go together"]
    problems = []
    if settings.metrics_port == settings.port:
        problems.append("KEYTURN_METRICS_PORT must differ from KEYTURN_PORT")
    if settings.workers > 1:
        # Every worker would bind the same port (or, with SO_REUSEPORT, a scrape would see
        # one random worker's numbers): one process per scrape target.
        problems.append(
            "KEYTURN_METRICS_PORT needs KEYTURN_WORKERS=1: each worker would bind the same "
            "metrics port; scale with more replicas (one process each) instead of workers"
        )
    return problems
