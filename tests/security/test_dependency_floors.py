"""Installed security-relevant dependencies are at or above versions without known CVEs.

pyproject.toml pins exact versions; this test guards against a pin (or the lock file)
being moved back below a fix. Each floor names the advisory it excludes.

ASVS v5.0.0-15.2.1 (components free of known vulnerabilities within the update policy).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.version import Version

FLOORS = {
    # CVE-2024-53861: issuer check bypass by partial string match ("abc" in "__abc__").
    "PyJWT": ("2.10.1", "CVE-2024-53861"),
    # No advisory known to us; 1.0 is the stable API (JWSRegistry algorithm allow-list)
    # that keyturn.security.jose is written against.
    "joserfc": ("1.0.0", "stable 1.x API (no advisory known)"),
    # CVE-2024-12797 (bundled OpenSSL, RPK auth) fixed in 44.0.1.
    "cryptography": ("44.0.1", "CVE-2024-12797"),
    # CVE-2024-47874 (multipart field size DoS) fixed in 0.40.0; CVE-2025-54121 in 0.47.2.
    "starlette": ("0.47.2", "CVE-2024-47874, CVE-2025-54121"),
    # Ships a starlette range that includes the fixes above.
    "fastapi": ("0.115.0", "starlette floor (CVE-2024-47874)"),
    # CVE-2025-27516: sandbox escape through the |attr filter.
    "jinja2": ("3.1.6", "CVE-2025-27516"),
    # No advisory known to us; the floor keeps the maintained major line (3.x+).
    "aiosmtplib": ("3.0.0", "maintained line (no advisory known)"),
}
# Not a dependency: Keyturn takes no form bodies yet. If it comes back (a form page), it
# must be at least 0.0.18 (CVE-2024-53981, multipart boundary DoS).
ABSENT_OR_FLOOR = {"python-multipart": ("0.0.18", "CVE-2024-53981")}


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_installed_version_meets_floor(package: str) -> None:
    floor, advisory = FLOORS[package]
    try:
        installed = version(package)
    except PackageNotFoundError:
        pytest.fail(f"{package} is not installed, yet Keyturn depends on it")
    assert Version(installed) >= Version(floor), (
        f"{package} {installed} is below {floor} ({advisory})"
    )


def test_python_multipart_is_absent() -> None:
    """No form parsing yet: python-multipart is not installed (when it is, the floor holds)."""
    floor, advisory = ABSENT_OR_FLOOR["python-multipart"]
    try:
        installed = version("python-multipart")
    except PackageNotFoundError:
        return
    pytest.fail(
        f"python-multipart {installed} is installed but nothing takes form bodies; if a form "
        f"page now needs it, replace this test with a floor of {floor} ({advisory})"
    )


def test_floors_compare_versions_not_strings() -> None:
    """The comparison can fail: 0.9 < 0.40 as versions (it is not as strings)."""
    assert Version("0.9.0") < Version("0.40.0")
    assert Version("2.10.0") < Version("2.10.1")
