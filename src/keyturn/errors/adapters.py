"""Errors adapters raise to the services that call them; neither reaches the edge."""


class StoreUnavailable(Exception):
    """A shared store (Redis) could not be reached or did not answer in time.

    The service that catches it decides how to degrade (DESIGN.md section 6: Redis loss
    degrades to the database, never opens a door). The driver error is the ``__cause__``.
    """


class MailDeliveryError(Exception):
    """A mail could not be handed to the mail server.

    The message never holds a credential or the body. ``permanent`` is True when retrying
    cannot help (a 5xx refusal, a message that cannot be built); connection failures,
    timeouts, 4xx replies and relay misconfiguration are retried by the worker.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
