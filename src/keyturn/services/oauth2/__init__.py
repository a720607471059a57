"""The OAuth 2.0 / OpenID Connect provider's use cases.

``authorize`` (RFC 6749 section 4.1.1, OpenID Connect Core section 3.1.2), ``tokens``
(RFC 6749 sections 4.1.3, 4.4 and 6) and ``metadata`` (RFC 8414, OpenID Connect
Discovery 1.0). No HTTP here: the edge (``keyturn.api.oauth2``) parses and renders.
"""
