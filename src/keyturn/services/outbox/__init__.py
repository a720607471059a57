"""The durable mail queue (DESIGN.md section 6): enqueue in the caller's transaction, deliver
at least once.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""
