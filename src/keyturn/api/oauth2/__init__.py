"""The OAuth 2.0 / OpenID Connect provider's edge (``/oauth2/*`` and the well-known documents).

Errors here take the RFC 6749 section 5.2 form (``keyturn.api.problems``); parameters
arrive as ``application/x-www-form-urlencoded`` (RFC 6749 Appendix B) through
:func:`oauth_form`, and clients authenticate through :func:`authenticate_client`.
"""
