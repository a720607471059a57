"""Signing keys: the per-process key manager, the rotation schedule, emergency revocation
and the operator commands on keys.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it finds these names already bound; isort keeps the order.
# isort: off
from keyturn.services.signing_keys.revocation import KeyRevocation
from keyturn.services.signing_keys.key_info import KeyInfo
from keyturn.services.signing_keys.manager import KeyManager
from keyturn.services.signing_keys.operations import AdminKeyService
from keyturn.services.signing_keys.rotation import RotationRefused, RotationResult
# isort: on

__all__ = [
    "AdminKeyService",
    "KeyInfo",
    "KeyManager",
    "KeyRevocation",
    "RotationRefused",
    "RotationResult",
]
