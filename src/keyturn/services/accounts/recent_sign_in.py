"""The "recent authentication" rule (issue 15, ASVS 5.0 V6.2/V7.5): sensitive changes need a
session whose sign-in (password, or password and second factor, or passkey) is recent.

Read from the session row, not the token's ``auth_time`` claim: a refresh keeps the
sign-in time, and a session ended a moment ago no longer counts. An API key and an OAuth
grant never qualify: a key is not a sign-in, and a grant acts for a client.
"""

from __future__ import annotations

from datetime import timedelta

from keyturn.domain import Principal, Session, utcnow
from keyturn.errors import ReauthenticationRequired
from keyturn.services.admin import require_fresh_login
from keyturn.services.ports import UnitOfWorkFactory

_SIGN_IN_AGAIN = "Sign in again (within the last {minutes} minutes), then retry."


class RecentSignIn:
    """Checks that the caller signed in within ``KEYTURN_REAUTHENTICATION_MAX_AGE``."""

    def __init__(self, *, read_uow_factory: UnitOfWorkFactory, max_age: int) -> None:
        self._read_uow_factory = read_uow_factory
        self._max_age = timedelta(seconds=max_age)

    async def require(self, principal: Principal) -> Session:
        """The caller's live, recently signed-in first-party session.

        Raises:
            FreshLoginRequired: The caller is an API key.
            ReauthenticationRequired: No session, an ended one, an OAuth grant, or a
                sign-in older than the limit.
        """
        require_fresh_login(principal)
        now = utcnow()
        session = None
        if principal.session_id is not None:
            async with self._read_uow_factory() as uow:
                session = await uow.sessions.get(principal.session_id)
        if (
            session is None
            or session.user_id != principal.user_id
            or session.revoked_at is not None
            or session.client_id is not None
            or now - session.auth_time > self._max_age
        ):
            minutes = max(1, int(self._max_age.total_seconds()) // 60)
            raise ReauthenticationRequired(_SIGN_IN_AGAIN.format(minutes=minutes))
        return session
