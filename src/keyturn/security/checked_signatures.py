"""Signatures that already held: one ECDSA verify per token, not one per request.

Part of ``keyturn.security.jose`` (split out to keep modules small; import it from
there). An access token is presented many times in its life (every ``GET /v1/me``, every
introspection of it), and its ES256 verify was the largest single cost of those requests
(issue 18: 16-19 % of ``/v1/me``'s samples; 64 us of a verify's 83 us).
:class:`CheckedSignatures` keeps a digest of each token whose signature held, so the same
bytes are not verified again.

Only the signature step is skipped, and only for the very bytes that passed it:

- the key is recorded by digest of the WHOLE compact token (header, payload and
  signature as received), BLAKE2b-256, so another token (a changed claim, a twin
  signature) never matches one that was checked;
- the verifier still decodes the token, checks the header, the algorithm allow-list and
  finds the key by ``kid`` before asking here: a token of a key that is no longer loaded
  (retired, revoked) is refused as before, and the ``kid`` is the RFC 7638 thumbprint of
  the key, so one ``kid`` always names the same key;
- the claims (``exp``, ``nbf``, ``iss``, ``aud``...) are checked on every presentation.

A hit answers a little sooner than a miss, which tells a caller that the token it holds
was seen before; a caller holding the token learns nothing it could not learn by using it.
The size is bounded: the oldest digest goes first (about 130 bytes each).
"""

from __future__ import annotations

import hashlib

__all__ = ["CheckedSignatures"]

# 32,768 digests are about 4 MB: more tokens than live at once in a busy deployment's
# access-token lifetime on one replica (the benchmark presents 10,000).
DEFAULT_CAPACITY = 32_768


class CheckedSignatures:
    """Digests of compact tokens whose signature held, oldest first, bounded.

    Args:
        capacity: How many digests are kept at most.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # A dict keeps insertion order: the first key is the oldest.
        self._digests: dict[bytes, None] = {}

    @staticmethod
    def digest(token: bytes) -> bytes:
        """The key of a compact token (its exact bytes)."""
        return hashlib.blake2b(token, digest_size=32).digest()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, digest: bytes) -> None:
        """Records a token whose signature held (call only after it held)."""
        if digest in self._digests:
            return
        if len(self._digests) >= self._capacity:
            del self._digests[next(iter(self._digests))]
        self._digests[digest] = None
