"""Issue 13 acceptance: a newcomer's first five minutes, in Debian's chromium.

A fresh data dir, ``keyturn serve --port <free port>`` (not 8000) and no KEYTURN_ISSUER:
``/docs`` renders the operations (Swagger UI 5 reads our OpenAPI 3.1); sign up on
``/ui/signup``; open the mail in ``/ui/dev/mail``; follow its link; the address is
verified; sign in. Every URL the browser meets, and the issuer everywhere, carries the
port the server runs on.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.browser import launched, note_console, note_response, require_chromium, shot
from e2e.processes import LOW_ARGON2, Server, keyturn_env, keyturn_executable, wait_healthy
from helpers import PASSWORD, new_email
from net import free_port

pytestmark = pytest.mark.slow

sync_api = require_chromium()
DEFAULT_PORT = 8000


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched(sync_api) as chromium:
        yield chromium


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """``keyturn serve --host 127.0.0.1 --port P`` on a fresh data dir, no issuer set."""
    port = free_port()
    while port == DEFAULT_PORT:
        port = free_port()
    data_dir = tmp_path / "fresh"
    env = keyturn_env(data_dir, LOW_ARGON2)
    assert "KEYTURN_ISSUER" not in env
    assert "KEYTURN_PORT" not in env
    stdout_path, stderr_path = tmp_path / "serve.stdout.log", tmp_path / "serve.stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [keyturn_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        port=port,
        data_dir=data_dir,
        process=process,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


def test_first_five_minutes(fresh_server: Server, browser: Any) -> None:
    base = fresh_server.base_url
    # Startup names the issuer in use: the listener's own address, port included.
    # JSON or console log format alike: `"issuer": "<base>"` or `issuer=<base>`.
    fresh_server.wait_for_output("issuer")
    assert re.search(rf"issuer\W+{re.escape(base)}(?![\d/])", fresh_server.stdout()), (
        fresh_server.output()
    )
    with httpx.Client(base_url=base, timeout=30.0) as http:
        discovery = http.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == base
    endpoints = [value for name, value in discovery.items() if name.endswith("_endpoint")]
    assert endpoints
    assert all(value.startswith(base + "/") for value in [*endpoints, discovery["jwks_uri"]])

    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    seen: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on("console", lambda message: note_console(problems, message))
    page.on("response", lambda response: note_response(problems, response))

    # /docs: Swagger UI 5 lists the operations (4.15 showed "Unable to render this definition").
    page.goto(f"{base}/docs")
    page.get_by_text("/v1/auth/login", exact=True).first.wait_for()
    assert page.locator(".opblock").count() > 20
    assert page.get_by_text("Unable to render").count() == 0
    assert page.locator(".errors-wrapper").count() == 0
    shot(page, "5min-1-docs")

    # The landing page points a newcomer at everything else.
    page.goto(f"{base}/")
    assert (
        page.get_by_role("link", name="Dev mailbox").get_attribute("href") == f"{base}/ui/dev/mail"
    )
    page.get_by_role("link", name="Create an account").click()
    page.wait_for_url(f"{base}/ui/signup")

    email = new_email()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/ui/signup?status=sent")
    shot(page, "5min-2-signup-sent")

    # The dev mailbox: the verification mail arrives (the outbox worker is in-process).
    page.goto(f"{base}/ui/dev/mail")
    mail_link = page.get_by_role("link", name="Confirm your email address")
    for _ in range(300):
        if mail_link.count():
            break
        page.wait_for_timeout(100)
        page.reload()
    assert email in page.content()
    mail_link.first.click()
    page.wait_for_url(f"{base}/ui/dev/mail/*")
    # The HTML part renders in its sandboxed frame; the text part's link is clickable.
    frame = page.frame_locator("iframe.mail-html")
    frame.get_by_text("Confirm your email address").first.wait_for()
    shot(page, "5min-3-mail")
    verify = page.locator("pre.mail-text a[href*='/ui/verify?token=']")
    href = verify.get_attribute("href")
    assert href is not None
    assert href.startswith(f"{base}/ui/verify?token=")
    verify.click()
    page.wait_for_url(f"{base}/ui/verify?token=*")
    page.get_by_role("button", name="Verify my address").click()
    page.wait_for_url(f"{base}/ui/verify?status=done")
    assert page.get_by_role("heading", name="Address verified").is_visible()

    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/")
    assert page.get_by_role("heading", name="You are signed in").is_visible()
    assert "Yes" in page.locator("dl.account").inner_text()  # Verified: Yes
    shot(page, "5min-4-signed-in")

    web = [url for url in seen if url.startswith(("http:", "https:"))]
    assert web
    strays = [url for url in web if not url.startswith(base + "/") and url != base]
    assert strays == [], strays
    assert problems == []
    context.close()


def test_error_summary_has_one_focus_ring(fresh_server: Server, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{fresh_server.base_url}/ui/login")
    page.get_by_role("button", name="Sign in").click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    summary.focus()
    style = summary.evaluate(
        "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth,"
        " s.boxShadow, document.activeElement === e]; }"
    )
    # One solid 3px ring (WCAG 2.4.7 focus visible), no halo stacked on it.
    assert style == ["solid", "3px", "none", True]
    shot(page, "5min-focus-ring")
    page.close()
