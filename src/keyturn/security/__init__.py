"""Pure security primitives: passwords, digests, AEAD, signing keys and the JOSE facade.

The rule of this layer: every function and class takes its inputs explicitly (keys, params,
policies, the current time) and never reads settings, touches a database, a cache or the
network, or imports a web framework. ``keyturn.errors`` is the only Keyturn module it may
import. import-linter enforces this (DESIGN.md section 2).
"""
