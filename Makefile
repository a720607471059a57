# Two commands on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs, each with its own stamp: `make run` gets the server alone, every developer
# target (lint, test, fmt) the dev extra on top. The lock constrains both.
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# pytest-xdist workers: one per core (tests are a mix of I/O waits and hashing).
TEST_WORKERS ?= auto

.PHONY: install install-run run test test-cluster lint fmt openapi clean

$(RUN_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.'
	touch $(RUN_STAMP)

# The dev extra is a superset of the server's install, so it satisfies `make run` too.
$(DEV_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(DEV_STAMP) $(RUN_STAMP)

install-run: $(RUN_STAMP)

install: $(DEV_STAMP)

run: install-run
	$(BIN)/keyturn migrate
	$(BIN)/keyturn serve

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/bandit -q -r src -c pyproject.toml
	$(BIN)/hadolint Dockerfile

fmt: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# pytest exits 5 when no test ran; make treats any non-zero exit as failure.
# COV_APPEND=1 adds to the coverage data of an earlier run (.ci/run's second run), so the
# gate judges both runs together.
test: lint
	$(if $(COV_APPEND),,rm -f .coverage .coverage.*)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --cov $(if $(COV_APPEND),--cov-append) --cov-report=term-missing --cov-fail-under=90 --durations=25 $(PYTEST_ARGS)

# The replica and fault tests alone (issue 17): private PostgreSQL, Redis, three replicas
# and nginx of their own; `make test` runs them too.
test-cluster: install
	$(BIN)/python -m pytest -m cluster -s --durations=10 tests/e2e

openapi: install-run
	$(BIN)/python -m keyturn.cli.openapi docs/specifications/openapi.json
	$(BIN)/python -m keyturn.cli.openapi src/keyturn/api/openapi.json

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (bench/README.md): PostgreSQL + Redis on 127.0.0.1, wrk (installed if missing).
# Extra options through BENCH_ARGS, e.g. `make bench BENCH_ARGS="--users 1000000"`.
.PHONY: bench bench-quick

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# Scaling (1/2/3 workers) and the soak (bench/README.md, "Scaling" and "Soak").
.PHONY: bench-scaling soak

bench-scaling: install
	$(BIN)/python -m bench --scaling $(BENCH_ARGS)

# 30 minutes by default; shorter with `make soak BENCH_ARGS="--minutes 5"`.
soak: install
	$(BIN)/python -m bench --soak $(BENCH_ARGS)
