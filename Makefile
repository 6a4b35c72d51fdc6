# OrgGuard — the few commands everyone uses. Each target sets up what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PORT    ?= 7071
SANDBOX_PORT ?= 7072

.PHONY: run test test-fast lint bench infra-check clean help

help:
	@echo "make run          local host on :7071 with the sandbox orgs on :7072 (PORT=, SANDBOX_PORT= to change)"
	@echo "make test         the whole suite (installs everything it needs, Azurite included)"
	@echo "make lint         ruff + mypy"
	@echo "make bench        benchmarks (tables printed with the command that made them)"
	@echo "make infra-check  check the Bicep: syntax, Azure API specs, app settings both ways"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json
	npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error
	@touch $@

run: $(STAMP)
	$(BIN)/orgguard serve --sandbox --port $(PORT) --sandbox-port $(SANDBOX_PORT)

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not azurite"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions sandbox function_app.py

bench: $(STAMP)
	$(BIN)/python -m bench

infra-check: $(STAMP)
	$(BIN)/python infra/check.py

clean:
	rm -rf $(VENV) node_modules .orgguard .pytest_cache .mypy_cache .ruff_cache
