"""The OAuth 2.0 / OpenID Connect provider: authorize, the token endpoint's grants, clients and
their registration rules, consents, introspection and revocation, ID tokens, userinfo,
RP-initiated logout and the hosted pages' browser sessions.

No HTTP here: the edge (``keyturn.api.oauth2``) parses and renders. See
docs/technical/2026-12-05_backend_architecture.md.
"""
