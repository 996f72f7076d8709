# Two commands: `make run` (the app) and `make test` (the whole suite). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency pinned (`make lock` writes both): the image installs the first, .venv the second.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
LOCK_FLAGS ?=

.PHONY: run test test-fast bench install lock clean

$(STAMP): pyproject.toml $(DEV_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Set up .venv from requirements-dev.lock (the app, embedded PostgreSQL/Redis, test tools)
install: $(STAMP)

## Pin every dependency again after changing pyproject.toml; commit both lock files.
## Pins already in the files are kept: `make lock LOCK_FLAGS=--upgrade` (or --upgrade-package NAME) moves them.
lock: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check pip-tools
	$(BIN)/pip-compile --quiet $(LOCK_FLAGS) --all-extras --strip-extras --allow-unsafe --all-build-deps \
		--no-emit-index-url --no-emit-find-links --output-file $(DEV_LOCK) pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --all-build-deps --no-emit-index-url \
		--no-emit-find-links --constraint $(DEV_LOCK) --output-file $(LOCK) pyproject.toml

## Start web + worker on http://127.0.0.1:8000 (PostgreSQL/Redis: configured, local, or embedded in .data/)
run: $(STAMP)
	$(BIN)/switchboard run

## Run every test (unit, conformance, integration, browser); screenshots land in artifacts/screenshots/
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Only the tests that need no services
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/conformance

## Benchmarks print JSON (they never pass or fail on time)
bench: $(STAMP)
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .data artifacts .pytest_cache
