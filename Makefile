# OrgGuard — the few commands everyone uses. Each target sets up what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PORT    ?= 7071
SANDBOX_PORT ?= 7072
SWAGGER_UI := functions/static/vendor/swagger-ui
SWAGGER_FILES := swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE
CHROMIUM   := /usr/bin/chromium

.PHONY: run test test-fast lint bench infra-check static clean help

help:
	@echo "make run          local host on :7071 with the sandbox orgs on :7072 (PORT=, SANDBOX_PORT= to change)"
	@echo "make test         the whole suite (installs everything it needs, Azurite included)"
	@echo "make lint         ruff + mypy; prettier and node --check for the page's files"
	@echo "make bench        benchmarks (tables printed with the command that made them)"
	@echo "make infra-check  check the Bicep: syntax, Azure API specs, app settings both ways"
	@echo "make static       copy Swagger UI's files from npm into functions/static (before a deploy)"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error || \
	  SCARF_ANALYTICS=false npm install --no-audit --no-fund --loglevel=error
	@touch $@

# /api/docs serves Swagger UI from these files (npm swagger-ui-dist, pinned in package.json), never a CDN.
$(SWAGGER_UI)/swagger-ui-bundle.js: $(NODE_STAMP)
	mkdir -p $(SWAGGER_UI)
	cd node_modules/swagger-ui-dist && cp $(SWAGGER_FILES) $(CURDIR)/$(SWAGGER_UI)/

static: $(SWAGGER_UI)/swagger-ui-bundle.js

# The gate benchmark drives its HTTP throughput with Debian's wrk (a C load generator).
WRK := /usr/bin/wrk
$(WRK):
	@command -v apt-get >/dev/null || { echo "error: $(WRK) is missing and apt-get is not here to install it" >&2; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "error: $(WRK) is missing; as root: apt-get install -y wrk" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "error: $(CHROMIUM) is missing and apt-get is not here to install it" >&2; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "error: $(CHROMIUM) is missing; as root: apt-get install -y chromium" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
	@test -x $(CHROMIUM) || { echo "error: installing chromium did not give $(CHROMIUM)" >&2; exit 1; }

run: $(STAMP) static
	$(BIN)/orgguard serve --sandbox --port $(PORT) --sandbox-port $(SANDBOX_PORT)

# Two pytest-xdist workers, one per core: the whole suite in about 9 minutes instead of 14 on this machine
# (every server, Azurite and browser a test starts takes a free port, so the workers never share one).
test: $(STAMP) $(NODE_STAMP) static $(CHROMIUM)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --durations=15

test-fast: $(STAMP) static
	$(BIN)/python -m pytest -q -m "not slow and not azurite"

lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions sandbox bench function_app.py
	$(BIN)/lint-imports --no-cache
	npx --no-install prettier --check "functions/static/**/*.{js,css,html}"
	for f in functions/static/js/*.js functions/static/js/views/*.js; do node --input-type=module --check < $$f || exit 1; done

bench: $(STAMP) $(NODE_STAMP) $(WRK)
	$(BIN)/python -m bench

infra-check: $(STAMP)
	$(BIN)/python infra/check.py

clean:
	rm -rf $(VENV) node_modules .orgguard .pytest_cache .mypy_cache .ruff_cache $(SWAGGER_UI) tests/artifacts
