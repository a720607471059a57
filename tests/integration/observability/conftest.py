"""Scraping ``/metrics`` over HTTP and reading the text exposition format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Scrape = Callable[[httpx.AsyncClient], Awaitable["Exposition"]]


class Exposition:
    """One scrape: the families it declares and every sample, by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: set[str] = set()
        self.samples: Samples = {}
        # Every series name a query may use, declared families without samples included
        # (a labelled counter nobody incremented yet has none).
        self.names: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            self.names.update(f"{family.name}{suffix}" for suffix in _SUFFIXES[family.type])
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels`` (0 when absent)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample named ``name``."""
        return [dict(labels) for sample, labels in self.samples if sample == name]

    def sample_names(self) -> set[str]:
        """Every sample name (families plus their _total/_bucket/_count/... suffixes)."""
        return {name for name, _ in self.samples}


async def _scrape(client: httpx.AsyncClient, path: str = "/metrics") -> Exposition:
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return Exposition(answer.text)


@pytest.fixture
def scrape() -> Scrape:
    """``await scrape(client)``: GET /metrics through ``client`` and parse it."""
    return _scrape
