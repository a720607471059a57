"""Ratios and targets (issue 18's table, then issue 7's rows that still matter)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from bench.harness.report import KEYCLOAK_PER_VCPU, KEYCLOAK_POD_MB, Ratio, Target
from bench.harness.scenarios import Measured

HEALTHZ = "keyturn-healthz"
ME_ONE = "keyturn-me-one-token"
ME_MANY = "keyturn-me-many-tokens"
ME_PACED = "keyturn-me-many-tokens-paced-70pct"
JWKS = "keyturn-jwks"
LOGIN = "keyturn-login"
REFRESH = "keyturn-refresh"
MIXED = "keyturn-me-while-logins-saturate"
CLIENT_CREDENTIALS = "keyturn-oauth-client-credentials"
INTROSPECT = "keyturn-oauth-introspect"
FU_LOGIN_DEFAULT = "fastapi-users-login-default-hash"
FU_LOGIN_EQUAL = "fastapi-users-login-keyturn-hash"
FU_ME = "fastapi-users-me"
OIDC_CLIENT_CREDENTIALS = "oidc-provider-client-credentials"
OIDC_INTROSPECT = "oidc-provider-introspect"
# Not a wrk scenario: argon2-cffi's verify rate in the hash pool's thread count (hashrate.py).
CEILING = "raw-argon2id-ceiling"


class RatioRow(NamedTuple):
    """One of issue 18's ratio rows: numerator / denominator, both scenario names."""

    label: str
    numerator: str
    denominator: str
    goal: float
    moonshot: float


# pairs.py measures these again side by side; the targets table shows the median of
# those rounds when they ran.
RATIO_ROWS = (
    RatioRow("GET /v1/me (many tokens) / GET /healthz", ME_MANY, HEALTHZ, 0.5, 0.7),
    RatioRow("GET /v1/me (many tokens) / fastapi-users GET /users/me", ME_MANY, FU_ME, 3, 5),
    RatioRow(
        "client_credentials (JWT ES256) / node-oidc-provider",
        CLIENT_CREDENTIALS,
        OIDC_CLIENT_CREDENTIALS,
        0.5,
        1,
    ),
    RatioRow("introspection / node-oidc-provider", INTROSPECT, OIDC_INTROSPECT, 0.5, 1),
    RatioRow("login / raw argon2id verify ceiling", LOGIN, CEILING, 0.8, 0.9),
)


def _rps(results: Mapping[str, Measured], name: str) -> float | None:
    measured = results.get(name)
    return measured.best.rps if measured else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _per_vcpu(measured: Measured | None) -> float | None:
    """Requests per second per fully busy core of the server (its CPU s per wall s)."""
    if measured is None:
        return None
    run, cpu = measured.best, measured.cpu[measured.best_index]["server"]
    return run.requests / cpu if cpu else None


def ratios(
    results: Mapping[str, Measured],
    hash_ceiling: float | None,
    workers: int,
    peer_hash_ceiling: float | None = None,
) -> list[Ratio]:
    out: list[Ratio] = []
    base = _rps(results, HEALTHZ)
    for name in (ME_ONE, ME_MANY, JWKS, LOGIN, REFRESH, CLIENT_CREDENTIALS, INTROSPECT):
        if name in results:
            out.append(
                Ratio(
                    f"{results[name].scenario.title} / GET /healthz",
                    _div(_rps(results, name), base),
                )
            )
    out.append(
        Ratio(
            "login / raw argon2id verify ceiling",
            _div(_rps(results, LOGIN), hash_ceiling),
            "ceiling: argon2-cffi verify in the hash pool's thread count, same run",
        )
    )
    out.append(
        Ratio(
            "fastapi-users login (equal hash cost) / raw argon2id ceiling at its phase",
            _div(_rps(results, FU_LOGIN_EQUAL), peer_hash_ceiling),
            "the ceiling measured again before the fastapi-users phase (shared machine)",
        )
    )
    out.append(
        Ratio(
            "Keyturn GET /v1/me (many tokens) / fastapi-users GET /users/me",
            _div(_rps(results, ME_MANY), _rps(results, FU_ME)),
        )
    )
    out.append(
        Ratio(
            "Keyturn login / fastapi-users login (equal hash cost)",
            _div(_rps(results, LOGIN), _rps(results, FU_LOGIN_EQUAL)),
            "both argon2id m=19456 KiB, t=2, p=1",
        )
    )
    out.append(
        Ratio(
            "Keyturn login / fastapi-users login (its default hash)",
            _div(_rps(results, LOGIN), _rps(results, FU_LOGIN_DEFAULT)),
            "fastapi-users default: pwdlib argon2id m=65536 KiB, t=3, p=4",
        )
    )
    out.append(
        Ratio(
            "Keyturn client_credentials / node-oidc-provider",
            _div(_rps(results, CLIENT_CREDENTIALS), _rps(results, OIDC_CLIENT_CREDENTIALS)),
            "pending until /oauth2/token exists" if CLIENT_CREDENTIALS not in results else "",
        )
    )
    out.append(
        Ratio(
            "Keyturn introspection / node-oidc-provider",
            _div(_rps(results, INTROSPECT), _rps(results, OIDC_INTROSPECT)),
            "pending until /oauth2/introspect exists" if INTROSPECT not in results else "",
        )
    )
    for kind, name in (
        ("login", LOGIN),
        ("refresh", REFRESH),
        ("client_credentials", CLIENT_CREDENTIALS),
    ):
        per_worker = _div(_rps(results, name), workers)
        keycloak = KEYCLOAK_PER_VCPU[kind]
        out.append(
            Ratio(
                f"Keyturn {kind} per worker / Keycloak per vCPU ({keycloak:.0f}/s)",
                _div(per_worker, keycloak),
            )
        )
        out.append(
            Ratio(
                f"Keyturn {kind} per busy server core / Keycloak per vCPU",
                _div(_per_vcpu(results.get(name)), keycloak),
                "requests / server CPU seconds",
            )
        )
    peak = peak_rss_per_worker(results) or 0.0
    out.append(
        Ratio(
            "Keycloak pod memory (1250 MB) / Keyturn peak RSS per worker",
            _div(KEYCLOAK_POD_MB, peak or None),
            f"Keyturn peak {peak:.0f} MB",
        )
    )
    return out


def _target(
    label: str,
    measured: float | None,
    goal: float,
    unit: str,
    *,
    below: bool = False,
    moonshot: float | None = None,
) -> Target:
    sign = "<" if below else ">="
    moon = "" if moonshot is None else f"{sign} {moonshot:g}{unit}"
    if measured is None:
        return Target(label, "n/a", f"{sign} {goal:g}{unit}", None, moon)

    def reaches(bound: float) -> bool:
        return measured < bound if below else measured >= bound

    return Target(
        label,
        f"{measured:,.2f}{unit}",
        f"{sign} {goal:g}{unit}",
        reaches(goal),
        moon,
        None if moonshot is None else reaches(moonshot),
    )


def _p95(results: Mapping[str, Measured], name: str) -> float | None:
    measured = results.get(name)
    return measured.best.percentile("95") if measured else None


def peak_rss_per_worker(results: Mapping[str, Measured]) -> float | None:
    """The largest peak resident size of one Keyturn server process over the run's scenarios."""
    peaks = [m.peak_rss_mb for m in results.values() if m.scenario.target == "keyturn"]
    return max(peaks, default=0.0) or None


def targets(
    results: Mapping[str, Measured],
    hash_ceiling: float | None,
    workers: int,
    scale: tuple[float, float] | None,
    paired: Mapping[str, float] | None = None,
    paired_rounds: int = 0,
) -> list[Target]:
    """Issue 18's table (now, target, moonshot) first, then the earlier rows that still matter.

    ``paired`` maps a ratio row's label to its median over ``paired_rounds`` paired rounds
    (pairs.py); a row without one is the ratio of the phases' best runs.
    """
    per_worker = {
        name: _div(_rps(results, name), workers) for name in (LOGIN, REFRESH, CLIENT_CREDENTIALS)
    }
    rps: dict[str, float | None] = {name: _rps(results, name) for name in results}
    rps[CEILING] = hash_ceiling
    out = []
    for row in RATIO_ROWS:
        label, value = row.label, _div(rps.get(row.numerator), rps.get(row.denominator))
        if paired and label in paired:
            label, value = f"{label} (median of {paired_rounds} paired rounds)", paired[label]
        out.append(_target(label, value, row.goal, "x", moonshot=row.moonshot))
    out += [
        _target(
            "GET /v1/me p95 while logins saturate the hash pool",
            _p95(results, MIXED),
            25,
            " ms",
            below=True,
            moonshot=10,
        ),
        _target(
            "peak RSS per worker",
            peak_rss_per_worker(results),
            200,
            " MB",
            below=True,
            moonshot=120,
        ),
    ]
    paced = results.get(ME_PACED)
    paced_label = "GET /v1/me p95 at ~70% of max throughput"
    if paced is not None and ME_MANY in results:
        share = paced.best.rps / results[ME_MANY].best.rps
        paced_label += f" (paced run reached {share:.0%})"
    out += [
        _target(paced_label, _p95(results, ME_PACED), 25, " ms", below=True),
        _target("login per worker", per_worker[LOGIN], 40, "/s"),
        _target("refresh per worker", per_worker[REFRESH], 500, "/s"),
        _target("client_credentials per worker", per_worker[CLIENT_CREDENTIALS], 1000, "/s"),
        _target(
            "login vs fastapi-users at equal hash cost",
            _div(_rps(results, LOGIN), _rps(results, FU_LOGIN_EQUAL)),
            1,
            "x",
        ),
    ]
    if scale is None:
        out.append(Target("1,000,000 users within 10% of 100,000", "n/a", "<= 10% slower", None))
    else:
        drop = 1 - scale[0] / scale[1]
        out.append(
            Target(
                "1,000,000 users within 10% of 100,000 (login and /v1/me, worst)",
                f"{drop:.1%} slower",
                "<= 10% slower",
                drop <= 0.10,
            )
        )
    return out


def scale_comparison(
    results: Mapping[str, Measured], users: int, directory: Path
) -> tuple[float, float] | None:
    """With 1,000,000 users: (this run, latest 100,000-user run) for the worse of login and
    /v1/me, read from the newest summary in ``directory`` that seeded 100,000 users."""
    if users < 1_000_000:
        return None
    for path in sorted(directory.glob("*-summary.json"), reverse=True):
        summary = json.loads(path.read_text())
        if summary.get("options", {}).get("users") != 100_000:
            continue
        before = {s["name"]: s["rps"] for s in summary["scenarios"]}
        pairs = [(_rps(results, n), before.get(n)) for n in (LOGIN, ME_MANY)]
        ratios_ = [(now, then) for now, then in pairs if now and then]
        if ratios_:
            return min(ratios_, key=lambda pair: pair[0] / pair[1])
    return None
