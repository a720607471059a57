"""Is each soak series flat? A least-squares slope over the second half of the samples.

The first half is warm-up (pools fill, caches and allocator arenas grow to their working
size); a leak shows as a steady slope after that. A series is **flat** when its slope,
projected over one hour, stays within ``max(relative x mean, floor)`` of the second half's
mean; beyond that it is **growing** (the finding) or **falling** (a backlog draining):

| series | relative | floor per hour |
|---|---|---|
| resident size per process (MB) | 10 % | 10 MB |
| open file descriptors per process | 10 % | 8 |
| PostgreSQL connections | 10 % | 4 |
| Redis used_memory (MB) | 10 % | 2 MB |
| Redis keys without a TTL | 10 % | 2 |
| outbox depth (rows to send) | 10 % | 50 |
| audit unsealed rows | 10 % | 100 |

(``mails_received`` is a running count and ``redis_keys`` grows until the longest rate
window, one hour, has filled: both reported, never judged. Redis ``used_memory`` follows
the keys, so a soak shorter than an hour may judge it growing; the keys without a TTL are
what could grow for ever.)
"""

from __future__ import annotations

from typing import Any

RELATIVE = 0.10
FLOORS = {
    "rss_mb": 10.0,
    "fds": 8.0,
    "pg_connections": 4.0,
    "redis_used_memory_mb": 2.0,
    "redis_keys_without_ttl": 2.0,
    "outbox_depth": 50.0,
    "audit_unsealed": 100.0,
}
NOT_JUDGED = {"t_s", "mails_received", "redis_keys"}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def judge(name: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdict for one series: slope per hour over the second half against its threshold."""
    points = [(float(s["t_s"]), float(s[name])) for s in samples if s.get(name) is not None]
    half = points[len(points) // 2 :]
    xs, ys = [p[0] for p in half], [p[1] for p in half]
    kind = name.split(".", 1)[0]
    per_hour = slope(xs, ys) * 3600
    mean = sum(ys) / len(ys) if ys else 0.0
    allowed = max(RELATIVE * abs(mean), FLOORS.get(kind, 0.0))
    return {
        "series": name,
        "samples": len(points),
        "first": points[0][1] if points else None,
        "last": points[-1][1] if points else None,
        "min": min((p[1] for p in points), default=None),
        "max": max((p[1] for p in points), default=None),
        "second_half_mean": round(mean, 2),
        "slope_per_hour": round(per_hour, 2),
        "allowed_per_hour": round(allowed, 2),
        "verdict": _verdict(len(half), per_hour, allowed),
    }


def _verdict(points: int, per_hour: float, allowed: float) -> str:
    """``flat``, ``falling`` (a backlog draining: not a leak) or ``growing``; ``n/a`` when
    the series has no values (e.g. no unsealed-audit column in this schema)."""
    if points < 2:
        return "n/a"
    if abs(per_hour) <= allowed:
        return "flat"
    return "falling" if per_hour < 0 else "growing"


def verdicts(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: list[str] = []
    for sample in samples:
        names += [k for k in sample if k not in NOT_JUDGED and k not in names]
    return [judge(name, samples) for name in names]


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def markdown(verdict_rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| series | first | last | min | max | slope / h (2nd half) | allowed / h | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in verdict_rows:
        cells = [row["series"]]
        cells += [_number(row[key]) for key in ("first", "last", "min", "max")]
        cells += [f"{row['slope_per_hour']:+g}", f"{row['allowed_per_hour']:g}"]
        cells.append("**growing**" if row["verdict"] == "growing" else row["verdict"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines
