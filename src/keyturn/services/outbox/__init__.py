"""The durable mail queue (DESIGN.md section 6): enqueue in the caller's transaction, deliver
at least once.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it finds these names already bound; isort keeps the order.
# isort: off
from keyturn.services.outbox.delivery import (
    DEAD_AFTER,
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    MailOutbox,
    OutboxWorker,
    REQUEST_KIND,
    RequestResolver,
    retry_delay,
)
from keyturn.services.outbox.maintenance import OutboxMaintenance
from keyturn.services.outbox.ports import Mailer
# isort: on

__all__ = [
    "DEAD_AFTER",
    "FIRST_RETRY_SECONDS",
    "MAX_RETRY_SECONDS",
    "REQUEST_KIND",
    "MailOutbox",
    "Mailer",
    "OutboxMaintenance",
    "OutboxWorker",
    "RequestResolver",
    "retry_delay",
]
