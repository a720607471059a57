"""Every failure of the Redis driver under an adapter call is ``StoreUnavailable``.

Issue 17 (faults under load): Redis stopped right after a connection was accepted, and
uvloop raised ``RuntimeError`` ("unable to perform operation on <TCPTransport closed=True>;
the handler is closed") from the connection's first write. It escaped ``store_errors``
and a refresh answered 500 instead of falling back to the database.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.asyncio import Redis

from keyturn.errors import StoreUnavailable
from keyturn.infra.revocation import RedisRevocationStore

pytestmark = pytest.mark.anyio

# What uvloop's UVHandle._ensure_alive raises for a write on a closed transport.
CLOSED_TRANSPORT = RuntimeError(
    "unable to perform operation on <TCPTransport closed=True reading=False 0x0>; "
    "the handler is closed"
)


class _ClosedUnderneath:
    """A Redis client whose every command meets a transport closed under it."""

    async def execute_command(self, *args: Any) -> Any:  # the deny-list's MGET
        raise CLOSED_TRANSPORT

    async def set(self, *args: Any, **kwargs: Any) -> Any:
        raise CLOSED_TRANSPORT


async def test_a_transport_closed_under_a_command_is_store_unavailable() -> None:
    store = RedisRevocationStore(cast(Redis, _ClosedUnderneath()), prefix="keyturn-test:")
    with pytest.raises(StoreUnavailable) as excinfo:
        await store.is_revoked("sid")
    assert excinfo.value.__cause__ is CLOSED_TRANSPORT
    with pytest.raises(StoreUnavailable):
        await store.revoke("sid", 60)


async def test_any_other_runtime_error_is_a_bug_not_an_outage() -> None:
    class _Broken:
        async def execute_command(self, *args: Any) -> Any:
            raise RuntimeError("coroutine was never awaited")

    store = RedisRevocationStore(cast(Redis, _Broken()), prefix="keyturn-test:")
    with pytest.raises(RuntimeError, match="never awaited"):
        await store.is_revoked("sid")
