# secretlink — `make run` starts the service, `make test` runs every test.
# Both install what is missing first: a virtualenv in .venv, the Python package with
# its dev tools, the npm packages (from package-lock.json) and the bundled page scripts.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium

PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
BUNDLES := webui/static/build/home.js webui/static/build/inbox.js webui/static/build/send.js \
	webui/static/build/pow-worker.js
JS_SOURCES := $(wildcard webui/src/*.js) crypto/secretlink.js webui/build.mjs

.PHONY: run test bench lint format build install chromium wrk vectors docs dist clean

run: install
	$(BIN)/secretlink serve --host $(HOST) --port $(PORT)

test: install chromium dist
	node --test crypto/tests/*.test.mjs
	$(BIN)/python -m pytest

# Performance goals P1-P5 (docs/PERFORMANCE.md): a few minutes, loopback only.
bench: install chromium wrk
	$(BIN)/python -m benchmarks.run

wrk:
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	  else \
	    echo "make bench needs Debian's wrk (apt-get install wrk)"; exit 1; \
	  fi; \
	fi

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(PY_STAMP) build

build: $(BUNDLES)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(BUNDLES) &: $(NPM_STAMP) $(JS_SOURCES)
	node webui/build.mjs

# Browser tests use Debian's Chromium (never a downloaded browser). Installed here
# when we may (root with apt-get); otherwise the browser tests skip loudly, or fail
# under CI=true.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "WARNING: $(CHROMIUM) missing and cannot install it here: browser tests will be skipped"; \
	  fi; \
	fi

vectors: $(PY_STAMP)
	$(BIN)/python crypto/generate_vectors.py
	$(BIN)/python crypto/generate_pow_vectors.py

docs: $(PY_STAMP)
	$(BIN)/python -m secretlink.settings > docs/SETTINGS.md

# One-file build: every Python dependency and the web assets in a zipapp for the
# Python version and platform it was built on (see README).
dist: dist/secretlink.pyz

dist/secretlink.pyz: $(PY_STAMP) $(BUNDLES) pyproject.toml $(shell find secretlink webui/templates webui/static -type f -not -name '*.pyc')
	mkdir -p dist
	$(BIN)/shiv --quiet --compressed --reproducible -c secretlink -p '/usr/bin/env python3' -o $@ .

clean:
	rm -rf $(VENV) node_modules webui/static/build dist build .pytest_cache .ruff_cache
