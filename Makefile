# secretlink — `make run` starts the service, `make test` runs every test.
# Both install what is missing first: a virtualenv in .venv with the Python package and
# its dev tools. The page scripts (webui/static/build/) are committed, built
# reproducibly from webui/src and package-lock.json: running and the Python tests need
# no Node.js. `make build` rebuilds them (needs Node.js and npm); `make check-bundles`
# rebuilds them in memory and fails when a byte differs from the committed files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
TEST_JOBS ?= 2

NEED_NODE := command -v node >/dev/null && command -v npm >/dev/null || { echo "building \
	the page scripts needs Node.js 20+ and npm (installing and running secretlink do not)"; exit 1; }

PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
BUNDLES := webui/static/build/home.js webui/static/build/inbox.js webui/static/build/send.js \
	webui/static/build/pow-worker.js webui/static/build/notify-sw.js webui/static/build/reply.js \
	webui/static/build/backup-worker.js webui/static/build/seal-worker.js

.PHONY: run test js-test check-bundles bundle-hashes bench lint format build install chromium \
	wrk vectors docs dist clean screenshots translations

run: install
	$(BIN)/secretlink serve --host $(HOST) --port $(PORT)

# The tests run in TEST_JOBS processes (pytest-xdist), each test file whole in one of
# them: module fixtures stay shared, and a file's servers never race its own tests.
test: install chromium dist js-test
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

# The JavaScript side: the shipped bundles must be what the source and lockfile build,
# and the browser crypto passes its tests. Both need Node.js: without it (someone
# checking the Python side only) they are skipped with a warning; under CI=true a
# missing Node.js fails the run.
js-test:
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  $(MAKE) --no-print-directory check-bundles && node --test crypto/tests/*.test.mjs; \
	elif [ "$(CI)" = true ]; then \
	  echo "make test: Node.js and npm are required under CI=true (bundle check, JS tests)"; exit 1; \
	else \
	  echo "WARNING: no Node.js/npm on PATH: the bundle check and the JS tests are SKIPPED"; \
	fi

# Rebuild the page bundles from webui/src and package-lock.json (in memory) and compare
# them byte for byte with the committed webui/static/build/; prints each file's SHA-256
# and SRI hash, and which file differs.
check-bundles: $(NPM_STAMP)
	@$(NEED_NODE)
	node webui/build.mjs --check

# The SHA-256 and SRI (sha384) hashes of the shipped page scripts; needs no Node.js.
bundle-hashes: $(PY_STAMP)
	$(BIN)/python -m secretlink.web.assets

# Performance goals P1-P6 (docs/PERFORMANCE.md): several minutes, loopback only.
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

install: $(PY_STAMP)

# Rebuild webui/static/build/ after changing webui/src or the npm packages, then commit
# it: the same source and lockfile give the same bytes on every machine.
build: $(NPM_STAMP)
	@$(NEED_NODE)
	node webui/build.mjs

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	@$(NEED_NODE)
	npm ci --no-audit --no-fund
	touch $@

# Committed files, never rebuilt implicitly (a user who runs `make run` keeps a clean
# `git status` and needs no Node.js); only a missing one stops the build here.
$(BUNDLES):
	@echo "$@ is missing: restore it with \`git checkout -- webui/static/build\`, or rebuild with \`make build\` (needs Node.js)"; exit 1

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

# The pages' languages (README, "Languages"): extract every string of the templates, the
# server and the page scripts (t() and tn() of webui/src/i18n.js) into messages.pot,
# merge it into each language's messages.po, and compile the .mo files that are
# committed beside them (tests/test_i18n.py fails when any of them is stale).
TRANSLATIONS := secretlink/translations
BABEL_KEYWORDS := -k lazy_gettext -k t -k tn:1,2

translations: $(PY_STAMP)
	$(BIN)/pybabel extract -F babel.cfg $(BABEL_KEYWORDS) --sort-by-file --width 100 \
	  --project secretlink --copyright-holder "secretlink contributors" \
	  -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --width 100 \
	  --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

vectors: $(PY_STAMP)
	$(BIN)/python crypto/generate_vectors.py
	$(BIN)/python crypto/generate_pow_vectors.py
	$(BIN)/python crypto/generate_conversation_vectors.py
	$(BIN)/python crypto/generate_attachment_vectors.py
	$(BIN)/python crypto/generate_protected_key_vectors.py

docs: $(PY_STAMP)
	$(BIN)/python -m secretlink.settings > docs/SETTINGS.md

# Screenshots of every page in light, dark and at 360 px into docs/screenshots/ (the
# browser test tests/test_screenshots.py; under `make test` it writes to a temporary
# folder). The README shows three of them, the only ones git keeps (see the folder's
# .gitignore).
screenshots: install chromium
	SECRETLINK_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -p no:randomly tests/test_screenshots.py

# The release files: an sdist and a wheel built from it (both carry the committed page
# bundles), and the one-file build: every Python dependency and the web assets in a
# zipapp for the Python version and platform it was built on (see README).
dist: dist/.packages dist/secretlink.pyz

PACKAGE_FILES := pyproject.toml MANIFEST.in README.md package.json package-lock.json webui/build.mjs babel.cfg \
	$(shell find secretlink webui/templates webui/static webui/src crypto/*.js -type f -not -name '*.pyc')

dist/.packages: $(PY_STAMP) $(BUNDLES) $(PACKAGE_FILES)
	mkdir -p dist
	rm -f dist/secretlink-*.whl dist/secretlink-*.tar.gz
	$(BIN)/python -m build --quiet --outdir dist .
	touch $@

dist/secretlink.pyz: $(PY_STAMP) $(BUNDLES) pyproject.toml $(shell find secretlink webui/templates webui/static -type f -not -name '*.pyc')
	mkdir -p dist
	$(BIN)/shiv --quiet --compressed --reproducible -c secretlink -p '/usr/bin/env python3' -o $@ .

# Leaves the committed page bundles alone.
clean:
	rm -rf $(VENV) node_modules dist build .pytest_cache .ruff_cache
