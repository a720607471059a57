"""Signing keys: the per-process key manager, the rotation schedule, emergency revocation
and the operator commands on keys.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""
