"""AES-256-GCM encryption of secrets at rest (TOTP seeds, private signing keys).

Blob format (all fields fixed length)::

    version (1 byte = 1) | key id (4 bytes) | nonce (12 bytes) | ciphertext || tag (16 bytes)

The key is ``KeyRing.derive("aead-v1")``; the key id is the first 4 bytes of SHA-256 of
that derived key, so a blob names the ring key that sealed it and decrypts after rotation.
The 5 header bytes are authenticated together with the caller's AAD.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyturn.security.digests import KeyRing

__all__ = ["Aead", "DecryptionError"]

_VERSION = 1
_PURPOSE = "aead-v1"
_KEY_ID_BYTES = 4
# 96-bit random nonces, the size GCM is specified for (NIST SP 800-38D section 8.2.2).
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 1 + _KEY_ID_BYTES
_MIN_BLOB_BYTES = _HEADER_BYTES + _NONCE_BYTES + _TAG_BYTES


class DecryptionError(Exception):
    """A blob cannot be decrypted: tampered, wrong AAD, unknown key id or bad format.

    This is a server-side fault (stored data or configuration), never user input, so it
    is deliberately outside the ``KeyturnError`` tree.
    """


class Aead:
    """AES-256-GCM under the key ring; encrypts with the newest key, decrypts with any.

    Args:
        ring: The secret key ring.

    Raises:
        ValueError: When two ring keys share a key id (the same key listed twice).
    """

    def __init__(self, ring: KeyRing) -> None:
        keys = ring.derive(_PURPOSE)
        self._ciphers: dict[bytes, AESGCM] = {}
        for key in keys:
            key_id = hashlib.sha256(key).digest()[:_KEY_ID_BYTES]
            if key_id in self._ciphers:
                # A blob must name exactly one key.
                raise ValueError("duplicate key in the key ring")
            self._ciphers[key_id] = AESGCM(key)
        self._newest_id = hashlib.sha256(keys[0]).digest()[:_KEY_ID_BYTES]
        self._newest = self._ciphers[self._newest_id]

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt under the newest ring key.

        Args:
            plaintext: The secret.
            aad: Context the blob is bound to (e.g. table, column and row id); the same
                bytes must be given to ``decrypt``.

        Returns:
            The blob.
        """
        header = bytes([_VERSION]) + self._newest_id
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._newest.encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, *, aad: bytes) -> bytes:
        """Decrypt a blob sealed under any ring key.

        Args:
            blob: The output of ``encrypt``.
            aad: The AAD given to ``encrypt``.

        Returns:
            The plaintext.

        Raises:
            DecryptionError: On a bad format, an unknown key id, tampering or wrong AAD.
        """
        cipher = self._cipher_for(blob)
        header = blob[:_HEADER_BYTES]
        nonce = blob[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, blob[_HEADER_BYTES + _NONCE_BYTES :], header + aad)
        except InvalidTag:
            raise DecryptionError("authentication failed (tampered blob or wrong aad)") from None

    def needs_reencrypt(self, blob: bytes) -> bool:
        """Tell whether a blob is sealed under an older key (for ``keyturn secret rotate``).

        Args:
            blob: The output of ``encrypt``.

        Returns:
            True when the blob's key is not the newest ring key.

        Raises:
            DecryptionError: On a bad format or an unknown key id.
        """
        self._cipher_for(blob)
        return blob[1:_HEADER_BYTES] != self._newest_id

    def _cipher_for(self, blob: bytes) -> AESGCM:
        if len(blob) < _MIN_BLOB_BYTES or blob[0] != _VERSION:
            raise DecryptionError("not an aead-v1 blob")
        cipher = self._ciphers.get(bytes(blob[1:_HEADER_BYTES]))
        if cipher is None:
            raise DecryptionError("blob sealed under a key that is not in the ring")
        return cipher
