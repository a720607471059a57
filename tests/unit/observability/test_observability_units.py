"""Settings rules of the metrics listener, the scrape-time cache, and the Redis error
family fed by every Redis adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import ConfigError, load_settings
from keyturn.errors import StoreUnavailable
from keyturn.infra.ceremonies import RedisCeremonyStore
from keyturn.infra.rate_limit import RedisRateLimiter
from keyturn.infra.revocation import RedisRevocationStore
from keyturn.observability.listener_settings import metrics_address
from keyturn.observability.metrics import REGISTRY, method_label
from keyturn.observability.scrape import CachedReading
from net import free_port

pytestmark = pytest.mark.anyio


def test_metrics_listener_settings(tmp_path: Path) -> None:
    assert metrics_address(load_settings(data_dir=tmp_path)) is None
    both = load_settings(data_dir=tmp_path, metrics_host="0.0.0.0", metrics_port=9000)  # noqa: S104
    assert metrics_address(both) == ("0.0.0.0", 9000)  # noqa: S104
    with pytest.raises(ConfigError, match="go together"):
        load_settings(data_dir=tmp_path, metrics_port=9000)
    with pytest.raises(ConfigError, match="go together"):
        load_settings(data_dir=tmp_path, metrics_host="127.0.0.1")
    with pytest.raises(ConfigError, match="must differ from KEYTURN_PORT"):
        load_settings(data_dir=tmp_path, metrics_host="127.0.0.1", metrics_port=8000)


def test_several_workers_with_a_metrics_port_are_refused_with_the_way_out(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="scale with more replicas"):
        load_settings(
            data_dir=tmp_path,
            workers=2,
            redis_url="redis://127.0.0.1:6379/0",
            metrics_host="127.0.0.1",
            metrics_port=9000,
        )


def test_method_label_is_bounded() -> None:
    assert method_label("POST") == "POST"
    assert method_label("BREW") == "other"
    assert method_label("get") == "other"  # methods are case-sensitive (RFC 9110 9.1)


async def test_a_reading_is_cached_and_its_failures_are_counted_not_raised() -> None:
    now = [0.0]
    reads: list[float] = []
    fail = [False]

    async def read() -> None:
        reads.append(now[0])
        if fail[0]:
            raise RuntimeError("database down")

    reading = CachedReading("unit-test", read, cache_seconds=5.0, clock=lambda: now[0])
    await reading.refresh()
    now[0] = 4.9
    await reading.refresh()
    assert reads == [0.0]
    now[0] = 5.0
    fail[0] = True
    errors = "keyturn_metrics_source_errors_total"
    before = REGISTRY.get_sample_value(errors, {"source": "unit-test"}) or 0.0
    await reading.refresh()
    assert reads == [0.0, 5.0]
    assert REGISTRY.get_sample_value(errors, {"source": "unit-test"}) == before + 1


@pytest.mark.parametrize(
    ("adapter", "component"),
    [
        (RedisRevocationStore, "revocation"),
        (RedisRateLimiter, "rate_limit"),
        (RedisCeremonyStore, "ceremonies"),
    ],
)
async def test_every_redis_adapter_counts_its_failures_in_one_family(
    adapter: type[RedisRevocationStore | RedisRateLimiter | RedisCeremonyStore], component: str
) -> None:
    # Nothing listens on the port: the command fails at once (connection refused).
    store = adapter.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="unit:")
    name = "keyturn_redis_errors_total"
    before = REGISTRY.get_sample_value(name, {"component": component}) or 0.0
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()
    assert REGISTRY.get_sample_value(name, {"component": component}) == before + 1
