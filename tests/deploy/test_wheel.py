"""The wheel works without the source tree, run exactly as the Dockerfile runs it.

Builds the sdist and, from it, the wheel (``python -m build --no-isolation`` with the dev
extra's pinned setuptools: offline, and the sdist is proven to hold what a wheel needs),
installs the wheel into a fresh venv with the lock as constraints, and from an empty
directory that is not the source tree runs the installed ``keyturn``: ``migrate``, then the
Dockerfile's ENTRYPOINT + CMD (``serve``) with the Dockerfile's ENV, its HEALTHCHECK
command, ``healthcheck --ready``, a signup and login over HTTP, the hosted pages, /docs and
GraphiQL with their assets, then SIGTERM and a clean exit. PostgreSQL, Redis and a secret
key are configured, so nothing may be written anywhere: not into the working directory, the
data dir or HOME (the read-only root filesystem promise).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from deploy.test_dockerfile import DOCKERFILE, dockerfile_stages, exec_form, healthcheck_command
from e2e.processes import COMMAND_TIMEOUT, LOW_ARGON2, START_DEADLINE, STOP_DEADLINE
from helpers import PASSWORD, TEST_SECRET, new_email
from net import free_port

ROOT = Path(__file__).parents[2]
PG_URL = os.environ.get("KEYTURN_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("KEYTURN_TEST_REDIS_URL")
# Variables that could make the venv's interpreter see the repository's code or venv.
VERIFY_SUBJECT = "Confirm your email address"
LEAKY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")

# Where the venv's interpreter finds keyturn, and whether the OpenAPI export came along.
PACKAGE_PROBE = (
    "import keyturn, importlib.resources as r; "
    "print(keyturn.__file__, r.files('keyturn.api').joinpath('openapi.json').is_file())"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not (PG_URL and REDIS_URL),
        reason="the wheel test needs KEYTURN_TEST_DATABASE_URL and KEYTURN_TEST_REDIS_URL",
    ),
]


def timed(steps: dict[str, float], name: str, args: list[str]) -> str:
    """Runs one build/install step (bounded), records how long it took, returns its output."""
    started = time.monotonic()
    # Install steps may write bytecode (pip does, in the image) even where the caller's
    # shell says not to; only the commands under test run with the Dockerfile's ENV.
    skip = {"PYTHONDONTWRITEBYTECODE", *LEAKY}
    env = {key: value for key, value in os.environ.items() if key not in skip}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    steps[name] = time.monotonic() - started
    assert result.returncode == 0, f"{name} failed\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the freshly built wheel installed; returns its ``bin`` directory."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    # A copy, so the build writes nothing (egg-info, build/) into the repository.
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    steps: dict[str, float] = {}
    dist = base / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)]
    timed(steps, "build sdist+wheel", build)
    # `python -m build` makes the sdist, then the wheel from the unpacked sdist: a file the
    # sdist lacks would be missing from the wheel and fail the run below.
    wheels = list(dist.glob("keyturn-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    assert len(list(dist.glob("keyturn-*.tar.gz"))) == 1, list(dist.iterdir())
    venv = base / "venv"
    # No pip inside (the runtime image needs none to run); the test's pip installs into it.
    timed(steps, "venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    constraints = str(ROOT / "requirements.lock")
    # pip would compile every module of every dependency one by one (most of the install's
    # time); the image has that bytecode. Here only what `keyturn` imports is compiled, by
    # importing it once; the commands under test then run with PYTHONDONTWRITEBYTECODE=1.
    install = [*pip, "install", "--quiet", "--no-compile", "-c", constraints, str(wheels[0])]
    timed(steps, "install", install)
    timed(steps, "bytecode", [str(venv / "bin" / "python"), "-c", "import keyturn.cli.main"])
    size = wheels[0].stat().st_size
    print(f"\nwheel {wheels[0].name}: {size / 1e6:.2f} MB; steps: {steps}")
    return venv / "bin"


def runtime_env(bin_dir: Path, tmp_path: Path, database_url: str, prefix: str) -> dict[str, str]:
    """The Dockerfile's runtime ENV, then what a deployment adds (database, Redis, secret)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KEYTURN_") and name not in LEAKY
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")
    env.update(dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1].env())
    env.update(
        {
            "KEYTURN_DATA_DIR": str(tmp_path / "data"),  # the image's volume, here a temp path
            "KEYTURN_PORT": str(free_port()),
            "KEYTURN_DATABASE_URL": database_url,
            "KEYTURN_REDIS_URL": str(REDIS_URL),
            "KEYTURN_REDIS_PREFIX": prefix,
            "KEYTURN_SECRET_KEY": TEST_SECRET,
            "KEYTURN_LOG_FORMAT": "json",
            **LOW_ARGON2,
        }
    )
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def load_page_and_assets(http: httpx.Client, path: str, **headers: str) -> list[str]:
    """GETs a page and every same-origin script/stylesheet it names; returns their paths."""
    page = http.get(path, headers=headers)
    assert page.status_code == 200, f"{path}: {page.status_code} {page.text[:300]}"
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', page.text)
    assert assets, f"{path} names no local asset"
    for asset in assets:
        answer = http.get(asset)
        assert answer.status_code == 200, f"{path} -> {asset}: {answer.status_code}"
        assert answer.content, asset
    return assets


def test_installed_wheel_migrates_serves_and_stops_as_the_image_would(
    installed: Path, empty_postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    stage = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    entrypoint = exec_form(stage.last("ENTRYPOINT"))
    serve = [*entrypoint, *exec_form(stage.last("CMD"))]
    health = healthcheck_command(stage.last("HEALTHCHECK"))
    env = runtime_env(installed, tmp_path, empty_postgres_url, redis_prefix)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # The commands resolve to the venv's console script, never the repository's.
    assert shutil.which(entrypoint[0], path=env["PATH"]) == str(installed / entrypoint[0])
    where = run([str(installed / "python"), "-c", PACKAGE_PROBE], env, cwd)
    assert where.returncode == 0, where.stderr
    package, openapi = where.stdout.split()
    assert Path(package).is_relative_to(installed.parent), where.stdout
    # The OpenAPI export ships in the wheel (an installed server has no docs/ folder).
    assert openapi == "True", where.stdout

    migrated = run([*entrypoint, "migrate"], env, cwd)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert migrated.stdout.startswith("applied 0001.."), migrated.stdout

    base_url = f"http://127.0.0.1:{env['KEYTURN_PORT']}"
    out_path, err_path = tmp_path / "serve.stdout", tmp_path / "serve.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        server = subprocess.Popen(serve, env=env, cwd=cwd, stdout=out, stderr=err)

    def output() -> str:
        return out_path.read_text(errors="replace") + err_path.read_text(errors="replace")

    try:
        wait_until_healthy(server, f"{base_url}/healthz", output)
        # Both probes at once: each is a new interpreter, and this machine has two cores.
        probes = [
            subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for argv in (health, [*health, "--ready"])
        ]
        for probe in probes:
            said = probe.communicate(timeout=COMMAND_TIMEOUT)[0].decode(errors="replace")
            assert probe.returncode == 0, f"{probe.args}: {said}"
            assert ": 200" in said, said

        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            email = new_email()
            signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
            assert signup.status_code == 202, signup.text
            login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            assert login.json()["access_token"]
            assert login.json()["refresh_token"]
            assets = load_page_and_assets(http, "/ui/login")
            assets += load_page_and_assets(http, "/docs")
            assets += load_page_and_assets(http, "/graphql", accept="text/html")
            # Package data: the hosted pages' CSS and script, Swagger UI's bundle, GraphiQL.
            for expected in ("/ui/static/", "swagger-ui-bundle.js", "graphiql.min.js"):
                assert any(expected in asset for asset in assets), (expected, assets)
            assert http.get("/openapi.json").json()["info"]["title"]
        # The verification mail (console mailer in dev) is rendered from the mail templates.
        deadline = time.monotonic() + START_DEADLINE
        while VERIFY_SUBJECT not in output():
            assert time.monotonic() < deadline, f"no verification mail\n{output()}"
            time.sleep(0.1)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert returncode == 0, f"exit {returncode} after SIGTERM\n{output()}"
    assert "Application shutdown complete." in output()

    assert list(cwd.iterdir()) == [], "the installed keyturn wrote into its working directory"
    assert not (tmp_path / "data").exists(), "the data dir was written with nothing to keep"
    assert not (tmp_path / "home").exists(), "something wrote into HOME"


def wait_until_healthy(
    server: subprocess.Popen[bytes], url: str, output: Callable[[], str]
) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(timeout=2.0) as http:
        while True:
            assert server.poll() is None, f"serve exited {server.returncode}\n{output()}"
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"never healthy\n{output()}"
            time.sleep(0.1)
