"""The short human block ``keyturn serve`` prints in dev: where everything is."""

from __future__ import annotations

from importlib.metadata import version

from keyturn.config import Settings, listener_url


def start_banner(settings: Settings) -> str:
    """A few lines for a person starting Keyturn on a laptop (never printed in production)."""
    base = listener_url(settings)
    places = [("API", f"{base}/v1")]
    if settings.show_docs:
        places.append(("API docs", f"{base}/docs"))
    places += [("Sign up", f"{base}/ui/signup"), ("Dev mailbox", f"{base}/ui/dev/mail")]
    width = max(len(label) for label, _ in places)
    lines = [f"Keyturn {version('keyturn')} (dev mode) on {base}"]
    lines += [f"  {label:<{width}}  {url}" for label, url in places]
    if not settings.smtp_url:
        lines.append("  Mails are printed here and kept in the dev mailbox (no SMTP server set).")
    lines.append("  Stop with Ctrl+C.")
    return "\n".join(lines)
