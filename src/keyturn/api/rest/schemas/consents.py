"""Bodies of ``/v1/me/consents``."""

from __future__ import annotations

from keyturn.api.rest.schemas.common import ConsentOut, Page


class ConsentList(Page[ConsentOut]):
    pass
