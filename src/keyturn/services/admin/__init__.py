"""Administration: users, roles and permissions, personal API keys, and the audit log.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""
