"""The ``next`` rule of the hosted pages and the brand contrast helpers (no app needed)."""

from __future__ import annotations

import pytest

from keyturn.api.ui.forms import safe_next
from keyturn.api.ui.rendering import contrast, link_color, text_on


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "ui",
        "//evil.example",
        "/\\evil.example",
        "/%5C%5Cok-but/\\no",
        "https://evil.example/",
        "/\t/evil.example",
        "/ok\r\nSet-Cookie: x=y",
        "/\u3000",
        "/" + "a" * 2048,
    ],
)
def test_unsafe_next_is_ignored(value: str | None) -> None:
    assert safe_next(value) is None


@pytest.mark.parametrize("value", ["/", "/ui/", "/oauth2/authorize?a=1&b=%2F%2Fx", "/%2F%2Fx"])
def test_same_origin_paths_are_kept(value: str) -> None:
    assert safe_next(value) == value


def test_contrast_choices() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert text_on("#1f6feb") == "#ffffff"
    assert text_on("#ffcc00") == "#000000"
    assert link_color("#1f6feb") == "#1f6feb"
    assert link_color("#ffcc00") == "#1b1f24"
