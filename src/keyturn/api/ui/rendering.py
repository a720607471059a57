"""Page rendering: one Jinja2 environment, the brand, the stylesheet, the page headers.

Every page carries its own full Content-Security-Policy (the middleware keeps the strict
API policy for everything else, because it only fills headers a response did not set):
nothing loads but our stylesheet and, when configured, the brand logo; forms post only
to us; no framing; no ``<base>``. No script, except on the pages that offer passkeys
(sign-in, second step, account security): they load one same-origin file, ``webauthn.js``,
under ``script-src 'self'; connect-src 'self'`` (WebAuthn exists only as a browser API).
Every other page stays script-free and works without JavaScript.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from keyturn.config import Settings

STATIC_PREFIX = "/ui/static/"
# The stylesheet's URL names its content, so it may be cached for a year and never revalidated.
STATIC_CACHE = "public, max-age=31536000, immutable"
# The one script (WebAuthn ceremonies); served as bytes, never through Jinja2.
SCRIPT_FILE = "webauthn.js"
PAGE_CACHE = "no-store"
# Not no-referrer: under it a browser sends "Origin: null" on our own form posts, and the
# Origin check (kit.PageKit.checked_form) could not tell them from a sandboxed attacker.
# same-origin sends nothing to other sites; a token in a page URL reaches only us.
PAGE_REFERRER_POLICY = "same-origin"
# WCAG 2.x success criterion 1.4.3 (AA) for normal text.
AA_TEXT_CONTRAST = 4.5
# What may stand in a CSP source expression built from a registered redirect URI; the
# registration rules already guarantee it, this is the second lock.
_CSP_SOURCE = re.compile(r"^[a-z][a-z0-9+.\-]*:(//[a-z0-9.\-\[\]:]+)?$")


def _channel(value: int) -> float:
    # WCAG 2.x relative luminance of one sRGB channel.
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(hex_color: str) -> float:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(first: str, second: str) -> float:
    """WCAG 2.x contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_on(hex_color: str) -> str:
    """Black or white, whichever contrasts more with ``hex_color``.

    Any brand colour then keeps its button label readable.
    """
    return (
        "#ffffff" if contrast(hex_color, "#ffffff") >= contrast(hex_color, "#000000") else "#000000"
    )


def link_color(hex_color: str) -> str:
    """The brand colour for links when it reaches WCAG AA (4.5:1) on white, else near-black."""
    return hex_color if contrast(hex_color, "#ffffff") >= AA_TEXT_CONTRAST else "#1b1f24"


def redirect_origin(redirect_uri: str) -> str | None:
    """The CSP source of a redirect URI: ``https://host[:port]``, or ``scheme:`` for a
    private-use scheme (RFC 8252 section 7.1); None if it cannot be expressed safely."""
    parts = urlsplit(redirect_uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return source if _CSP_SOURCE.match(source) else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Cookies:
    """Names and flags of the two browser cookies (from the issuer's scheme).

    On an https issuer both get ``Secure`` and the ``__Host-`` prefix (RFC 6265bis: the
    browser refuses such a cookie unless it is Secure, host-only and Path=/). On a plain
    http issuer (``make run`` on 127.0.0.1) a Secure cookie would never come back, so
    both flags are left off.
    """

    secure: bool

    @property
    def session(self) -> str:
        return "__Host-keyturn" if self.secure else "keyturn_session"

    @property
    def csrf(self) -> str:
        return "__Host-keyturn-csrf" if self.secure else "keyturn_csrf"

    def set(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")

    @property
    def mfa(self) -> str:
        """The cookie holding a pending second step's ``mfa_token`` (not a session).

        ``__Secure-``, not ``__Host-``: the cookie is scoped to ``/ui`` (RFC 6265bis).
        """
        return "__Secure-keyturn-mfa" if self.secure else "keyturn_mfa"

    def set_mfa(self, response: Response, value: str, *, max_age: int) -> None:
        """The ``mfa_token`` for ``/ui/mfa``, living as long as the token (issue 15)."""
        response.set_cookie(
            self.mfa,
            value,
            max_age=max_age,
            path="/ui",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear_mfa(self, response: Response) -> None:
        response.delete_cookie(
            self.mfa, path="/ui", secure=self.secure, httponly=True, samesite="lax"
        )


class Renderer:
    """Renders the hosted pages for one brand (``KEYTURN_BRAND_*``).

    Args:
        settings: The process settings (brand, issuer).
    """

    def __init__(self, settings: Settings) -> None:
        self.brand_name = settings.brand_name
        self.logo_url = settings.brand_logo_url
        self.issuer_origin = _origin(settings.issuer)
        self.cookies = Cookies(secure=urlsplit(settings.issuer).scheme == "https")
        self.env = Environment(
            loader=PackageLoader("keyturn.api.ui", "templates"),
            # Every value is escaped; the templates hold no |safe.
            autoescape=True,
            # A template naming a value nobody passed fails loudly, not with a hole.
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # brand_color passed the settings pattern #rrggbb: nothing else reaches the CSS.
        css = self.env.get_template("keyturn.css").render(
            brand=settings.brand_color.lower(),
            on_brand=text_on(settings.brand_color),
            link=link_color(settings.brand_color.lower()),
        )
        self.stylesheet = css.encode("utf-8")
        # A content fingerprint for the URL (cache busting), not a security value.
        fingerprint = hashlib.sha256(self.stylesheet).hexdigest()[:16]
        self.stylesheet_path = f"{STATIC_PREFIX}keyturn.{fingerprint}.css"
        self.script = files("keyturn.api.ui").joinpath("templates", SCRIPT_FILE).read_bytes()
        script_print = hashlib.sha256(self.script).hexdigest()[:16]
        self.script_path = f"{STATIC_PREFIX}webauthn.{script_print}.js"
        images = "'self'" + (f" {_origin(self.logo_url)}" if self.logo_url else "")
        self._images = images
        self.csp = self.policy("'self'")

    def policy(self, form_action: str, *, script: str | None = None, fetch: bool = False) -> str:
        """The page CSP with its ``form-action`` sources (and one script source: an inline
        script's hash, or ``self`` for ``webauthn.js``); ``fetch`` lets that script call us.

        The consent page and the ``form_post`` answer of ``/oauth2/authorize`` name the
        client's redirect origin: browsers apply ``form-action`` to the redirects that
        follow a form submission too.
        """
        scripts = f"script-src '{script}'; " if script else ""
        if fetch:
            scripts += "connect-src 'self'; "
        return (
            f"default-src 'none'; {scripts}style-src 'self'; "
            f"img-src {self._images}; form-action {form_action}; frame-ancestors 'none'; "
            "base-uri 'none'"
        )

    def redirect_policy(self, redirect_uri: str) -> str:
        """The page CSP allowing forms (and their redirects) to us and to ``redirect_uri``."""
        return self.policy(self._form_action(redirect_uri))

    def passkey_policy(self, redirect_uri: str | None = None) -> str:
        """The CSP of a page that loads ``webauthn.js`` (and may end at ``redirect_uri``)."""
        form_action = self._form_action(redirect_uri) if redirect_uri else "'self'"
        return self.policy(form_action, script="self", fetch=True)

    def _form_action(self, redirect_uri: str) -> str:
        origin = redirect_origin(redirect_uri)
        return f"'self' {origin}" if origin else "'self'"

    def page(
        self,
        template: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        csrf: Callable[[str], str] | None = None,
        csp: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """An HTML answer with the page headers (CSP, no-store); ``csp`` replaces the
        default policy (see :meth:`policy`)."""
        values = {
            "brand_name": self.brand_name,
            "logo_url": self.logo_url,
            "stylesheet": self.stylesheet_path,
            "script": None,
            "csrf": csrf or _no_csrf,
            "errors": {},
            "notice": None,
            "user": None,
            **context,
        }
        body = self.env.get_template(template).render(values)
        response = HTMLResponse(body, status_code=status, headers=dict(headers or {}))
        response.headers["content-security-policy"] = csp or self.csp
        response.headers["cache-control"] = PAGE_CACHE
        response.headers["referrer-policy"] = PAGE_REFERRER_POLICY
        return response

    def stylesheet_response(self, _request: Request) -> Response:
        return Response(
            self.stylesheet,
            media_type="text/css",
            headers={"cache-control": STATIC_CACHE},
        )

    def script_response(self, _request: Request) -> Response:
        return Response(
            self.script,
            media_type="text/javascript",
            headers={"cache-control": STATIC_CACHE},
        )


def _no_csrf(purpose: str) -> str:
    raise RuntimeError(f"the page has no CSRF token for {purpose!r}")
