# Two commands: `make run` (the app) and `make test` (the whole suite). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	touch $(STAMP)

install: $(STAMP)

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
