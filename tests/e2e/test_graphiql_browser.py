"""GraphiQL on ``GET /graphql`` in dev (issue 13 item 6), in Debian's chromium: it renders
from local assets under the page's strict CSP (no violation, no request to another origin)
and runs a query against the live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from e2e.browser import launched, note_console, note_response, require_chromium, shot
from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2

pytestmark = pytest.mark.slow

sync_api = require_chromium()


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched(sync_api) as chromium:
        yield chromium


def test_graphiql_renders_and_runs_a_query(start_server: StartServer, browser: Any) -> None:
    server = start_server(LOW_ARGON2)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    problems: list[str] = []
    hosts: set[str] = set()
    # A CSP violation is reported as a console error; a failed asset as a response >= 400.
    page.on("console", lambda message: note_console(problems, message))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.on("response", lambda response: note_response(problems, response))

    page.goto(f"{server.base_url}/graphql")
    page.wait_for_selector(".graphiql-container", timeout=30_000)
    assert page.title() == "Keyturn GraphQL"
    # The default document explains how to authenticate, then asks for `me`.
    assert "Authorization" in page.locator(".graphiql-query-editor").inner_text()
    page.locator(".graphiql-execute-button").click()
    response = page.locator(".graphiql-response")
    response.get_by_text("invalid_token").wait_for(timeout=30_000)
    # The error entry names the field and the REST code (partial errors, spec section 11).
    assert '"me"' in response.inner_text()
    shot(page, "graphiql")
    assert problems == []
    assert hosts == {urlsplit(server.base_url).netloc}
