"""Writes the OpenAPI document the app serves (``make openapi``); CI compares it to the file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from keyturn.app import create_app
from keyturn.config import Settings


def openapi_document() -> dict[str, Any]:
    """The document for default settings; building it needs no database or secret."""
    settings = Settings(
        secret_key=["x" * 32],
        database_url="sqlite+aiosqlite:///:memory:",
        issuer="http://127.0.0.1:8000",
    )
    return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "docs/specifications/openapi.json")
    target.write_text(render(openapi_document()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
