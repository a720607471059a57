"""Adapters behind Protocols: shared stores, mailers, workers, outbound clients.

Layer rule: ``infra`` sits beside ``db`` below ``services``. It may import
``keyturn.errors`` (and ``keyturn.security``), never ``keyturn.config``, the web
frameworks (fastapi, starlette, strawberry) or anything above it. Every adapter
receives explicit parameters (URLs, prefixes, timeouts) from the composition root
and is reached by services only through its Protocol, so each one ships an
in-process implementation and a shared-server one that pass the same contract suite.
"""
