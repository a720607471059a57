"""The per-IP ceiling on credential endpoints, as a router dependency."""

from __future__ import annotations

from fastapi import Depends

from keyturn.api.http.deps import ClientDep, ServicesDep


async def _count(services: ServicesDep, client: ClientDep) -> None:
    # Every request counts here, successful or not (DESIGN.md section 5).
    await services.throttle.request(client.ip)


CREDENTIAL_ENDPOINT = Depends(_count)
