"""Three replicas behind nginx on a private PostgreSQL and Redis (issue 17 item 2).

One cluster for the module (``e2e/cluster.py``). Through the balancer unless the point is
one replica: the balancer spreads requests over all three; a logout on one is refused by
the others within a second; a rate limit counts across replicas; a forced key rotation is
published and verified everywhere; a role change applies at the next request on each; a
WebAuthn and an OAuth ceremony begun on one replica finish on another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.cluster import Cluster, start_cluster, unavailable_reason
from helpers import PASSWORD, bearer, new_email

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cluster,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

# Failed logins per account+IP before 429, counted across the replicas (small: each one
# is a real password check).
FAILURES_PER_ACCOUNT_IP = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir: Path = tmp_path_factory.mktemp("cluster")
    env = {"KEYTURN_LIMIT_FAILURES_PER_ACCOUNT_IP": str(FAILURES_PER_ACCOUNT_IP)}
    with start_cluster(workdir, env_extra=env) as running:
        yield running


def test_the_balancer_spreads_requests_over_every_replica(cluster: Cluster) -> None:
    email = new_email()
    with cluster.client() as http:
        signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        by_upstream: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        for _ in range(30):
            answer = http.get("/v1/me", headers=bearer(token))
            statuses[answer.status_code] += 1
            by_upstream[answer.headers["x-upstream"]] += 1
    print(f"\n/v1/me through nginx: statuses {dict(statuses)}, by replica {dict(by_upstream)}")
    assert statuses == {200: 30}
    assert set(by_upstream) == {f"127.0.0.1:{server.port}" for server in cluster.replicas}
