"""Debian's chromium driven by Playwright (DESIGN.md section 8), shared by the browser tests.

Never ``playwright install``: browsers cannot be downloaded here; the system chromium is
used. A module calling :func:`require_chromium` is skipped without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> ModuleType:
    """``playwright.sync_api``, or a module-level skip saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is missing (apt-get install -y chromium; .ci/run installs it)",
            allow_module_level=True,
        )
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


@contextmanager
def launched(sync_api: ModuleType) -> Iterator[Any]:
    """A headless chromium, closed afterwards."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    """Saves a full-page PNG into test-artifacts/ui/ for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def note_console(problems: list[str], message: Any) -> None:
    """Console errors (a CSP violation is one); load failures are judged by status below."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(message.text)


def note_response(problems: list[str], response: Any) -> None:
    """A sub-resource (stylesheet, script, image) that failed; the favicon probe is the
    browser's own, and a page's own status is for the test to judge."""
    document = response.request.resource_type == "document"
    if response.status >= 400 and not document and not response.url.endswith("/favicon.ico"):
        problems.append(f"{response.status} {response.url}")
