"""Accounts: signup, login, refresh and logout; a user's own account, sessions and access
tokens; credential rules, throttling and lockout; lifecycle mails and one-time tokens.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""
