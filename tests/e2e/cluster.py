"""A deployment of the test's own: private PostgreSQL + private Redis + N replicas + nginx.

Issue 17 item 2. Everything runs on loopback and belongs to the test, so it can be broken:
a PostgreSQL cluster in a temp dir (``e2e/private_postgres.py``, stoppable), a private
``redis-server`` (``redis_server.py``, restartable, empty or not), ``keyturn serve``
replicas sharing one database, Redis, secret key and issuer (``replica_env``), and Debian's
nginx as a private instance (own prefix, config, pid and logs in the temp dir) balancing
over them. ``start_cluster`` is a context manager that stops every process it started.

The balancer retries another replica only when a connection fails, times out or answers
502 (``proxy_next_upstream``), and never re-sends a non-idempotent request that reached a
replica (nginx's default): a POST is not replayed. ``max_fails=1 fail_timeout=2s`` takes a
dead replica out of rotation at its first failure and tries it again two seconds later.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from e2e.private_postgres import (
    PrivatePostgres,
    create_private_postgres,
    remove_private_postgres,
)
from e2e.private_postgres import unavailable_reason as postgres_unavailable_reason
from e2e.processes import (
    START_DEADLINE,
    Server,
    keyturn_env,
    replica_env,
    run_in_process,
    spawn_server,
    wait_healthy,
)
from helpers import PASSWORD, TEST_SECRET, new_email
from keyturn.db.migrate import upgrade
from net import free_port
from redis_server import RedisServer

NGINX = "/usr/sbin/nginx"
# The redis prefix of the deployment (the private server holds nothing else).
REDIS_PREFIX = "keyturn-cluster:"
HTTP_TIMEOUT = 30.0

# What every replica of the test deployment runs with, beyond replica_env: one worker each
# (the replicas are the unit of scale here), the balancer trusted as a proxy, and per-IP
# ceilings raised out of the way (every request arrives from 127.0.0.1; the tests that are
# about a limit set their own). env_extra of start_cluster overrides any of these.
CLUSTER_ENV = {
    "KEYTURN_WORKERS": "1",
    "KEYTURN_TRUSTED_PROXIES": "127.0.0.1",
    "KEYTURN_LIMIT_IP_PER_MINUTE": "1000000",
    "KEYTURN_LIMIT_SIGNUPS_PER_IP_PER_HOUR": "1000000",
    "KEYTURN_LIMIT_MAILS_PER_ADDRESS_PER_HOUR": "1000",
    "KEYTURN_LIMIT_MAILS_PER_ADDRESS_ALL_NETWORKS_PER_HOUR": "1000",
}

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$status $request_method $uri $upstream_addr $upstream_status';
    access_log {root}/access.log upstream;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream keyturn {{
{servers}
        keepalive 32;
        # Below Keyturn's keep-alive timeout (5 s), as deploy/nginx/keyturn.conf sets it.
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://keyturn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A POST that reached a replica is never sent again (non_idempotent stays off).
            proxy_next_upstream error timeout http_502;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            # Which replica answered (the last one tried): tests count the spread.
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def unavailable_reason() -> str | None:
    """Why no cluster can run here (no nginx, redis-server or PostgreSQL), or None."""
    if not Path(NGINX).exists():
        return f"no nginx at {NGINX} (apt-get install nginx)"
    if shutil.which("redis-server") is None:
        return "no redis-server (apt-get install redis-server)"
    return postgres_unavailable_reason()


def require_cluster_tools() -> None:
    """Skips without nginx, redis-server or PostgreSQL, except under CI, which installs them
    (``.ci/run``): there a missing tool fails the test instead of hiding it."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: the cluster tests cannot run (CI must not skip them)")
    pytest.skip(reason)


@dataclass
class Nginx:
    """A private nginx instance (``daemon off``, a child process) on ``port``."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, root: Path, upstream_ports: list[int]) -> Nginx:
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports
        )
        # As root nginx's workers would switch to nobody, who cannot write pytest's
        # private temp dirs; a private test instance keeps its master's user.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, root=root, servers=servers, port=port))
        log = (root / "nginx.stderr.log").open("wb")
        with log:
            process = subprocess.Popen(
                [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        nginx = cls(root=root, port=port, process=process)
        nginx.wait_listening()
        return nginx

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        parts = [
            (self.root / name).read_text(errors="replace")
            for name in ("nginx.stderr.log", "error.log")
            if (self.root / name).exists()
        ]
        return "\n".join(parts)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"nginx exited with {self.process.returncode}\n{self.log()}"
                    )
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not answer within {START_DEADLINE}s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Cluster:
    """A running deployment; see the module docstring. Built by :func:`start_cluster`."""

    def __init__(
        self,
        workdir: Path,
        postgres: PrivatePostgres,
        redis_server: RedisServer,
        env: dict[str, str],
    ) -> None:
        self.workdir = workdir
        self.postgres = postgres
        self.redis = redis_server
        self.env = env
        self.replicas: list[Server] = []
        self.nginx: Nginx | None = None

    @property
    def balancer_url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def client(self) -> httpx.Client:
        """A client of the balancer (close it, or use it as a context manager)."""
        return httpx.Client(base_url=self.balancer_url, timeout=HTTP_TIMEOUT)

    def replica_client(self, i: int) -> httpx.Client:
        """A client straight to replica ``i``, bypassing the balancer."""
        return httpx.Client(base_url=self.replicas[i].base_url, timeout=HTTP_TIMEOUT)

    @contextmanager
    def replica_clients(self) -> Iterator[list[httpx.Client]]:
        """One client straight to each replica, in replica order, closed afterwards."""
        with ExitStack() as stack:
            yield [stack.enter_context(self.replica_client(i)) for i in range(len(self.replicas))]

    def _spawn(self, i: int, port: int | None = None) -> Server:
        env = keyturn_env(self.workdir / f"replica-{i}", self.env)
        return spawn_server(self.workdir, env, name=f"replica-{i}", port=port)

    def start_replicas(self, count: int) -> None:
        """Starts ``count`` replicas at once (as a rollout would) and waits for each."""
        self.replicas = [self._spawn(i) for i in range(count)]
        for server in self.replicas:
            wait_healthy(server)

    def kill_replica(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` to replica ``i`` and waits for it to exit (bounded)."""
        server = self.replicas[i]
        server.signal(sig)
        server.wait()

    def restart_replica(self, i: int) -> None:
        """Starts replica ``i`` again on its port (nginx's upstream names it) and waits
        until it is healthy; stops it first (SIGTERM) if it still runs."""
        old = self.replicas[i]
        if old.process.poll() is None:
            old.stop()
        self.replicas[i] = self._spawn(i, port=old.port)
        wait_healthy(self.replicas[i])

    def restart_redis(self, *, empty: bool) -> None:
        """Stops and starts redis-server on the same port, with no data when ``empty``,
        else with what it held (saved to its dump file first)."""
        dump = self.redis_dir / "dump.rdb"
        if not empty:
            client = redis.Redis(port=self.redis.port)
            try:
                client.save()
            finally:
                client.close()
        self.redis.stop()
        if empty:
            dump.unlink(missing_ok=True)
        self.redis.start()

    @property
    def redis_dir(self) -> Path:
        return self.workdir / "redis"

    def stop_postgres(self) -> None:
        """An outage: ``pg_ctl stop -m immediate`` (every backend ends at once)."""
        self.postgres.stop()

    def start_postgres(self) -> None:
        self.postgres.start()

    def cli_env(self) -> dict[str, str]:
        """The environment of a ``keyturn`` command run against this deployment."""
        return keyturn_env(self.workdir / "cli", self.env)

    def create_admin(self, email: str, password: str) -> None:
        """``keyturn users create-admin --password-stdin`` (in-process: ``run_in_process``)."""
        done = run_in_process(
            ["users", "create-admin", "--email", email, "--password-stdin"],
            self.cli_env(),
            stdin=f"{password}\n",
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"

    def output(self) -> str:
        """Every replica's and nginx's output, for failure messages."""
        parts = [
            f"=== replica {i} ===\n{server.output()}" for i, server in enumerate(self.replicas)
        ]
        if self.nginx is not None:
            parts.append(f"=== nginx ===\n{self.nginx.log()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        running = [server for server in self.replicas if server.process.poll() is None]
        for server in running:  # all at once: they shut down in parallel
            server.signal(signal.SIGTERM)
        for server in running:
            # Killed after the bound (AssertionError); teardown goes on with the rest.
            with suppress(AssertionError):
                server.wait()


def login(http: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """``POST /v1/auth/login`` through ``http``, which must answer 200; its body."""
    answer = http.post("/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def fresh_user(http: httpx.Client) -> dict[str, Any]:
    """A fresh account, logged in through ``http``; the login answer plus ``email``."""
    email = new_email()
    signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signup.status_code == 202, signup.text
    return {**login(http, email), "email": email}


def poll(check: Callable[[], bool], bound: float) -> float | None:
    """Calls ``check`` until it is true; the seconds that took, or None past ``bound``."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > bound:
            return None
        time.sleep(0.01)


@contextmanager
def start_cluster(
    tmp_path: Path, *, replicas: int = 3, env_extra: Mapping[str, str] | None = None
) -> Iterator[Cluster]:
    """A running cluster in ``tmp_path``; every process is stopped on exit."""
    with ExitStack() as stack:
        postgres = create_private_postgres()
        stack.callback(remove_private_postgres, postgres)
        postgres.start()
        asyncio.run(upgrade(postgres.url))

        redis_dir = tmp_path / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis_server = RedisServer(redis_dir)
        redis_server.start()
        stack.callback(redis_server.stop)

        env = {
            **replica_env(postgres.url, REDIS_PREFIX, TEST_SECRET, redis_url=redis_server.url),
            **CLUSTER_ENV,
            **(env_extra or {}),
        }
        cluster = Cluster(tmp_path, postgres, redis_server, env)
        stack.callback(cluster.stop)
        cluster.start_replicas(replicas)
        cluster.nginx = Nginx.start(tmp_path / "nginx", [s.port for s in cluster.replicas])
        yield cluster
