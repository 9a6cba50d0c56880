# newswatch — the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SOURCES := $(shell find services shared -name '*.py' -o -name '*.xml' -o -name '*.yaml' -o -name '*.j2' -o -name 'py.typed' -o -name '*.c' -o -name '*.pyi' -o -name '*.js' -o -name '*.css' -o -name '*.txt') pyproject.toml setup.py
PYTEST_ARGS ?=

.PHONY: demo test test-chaos lint lint-deploy browser docs typecheck unit integration e2e install clean

# The venv is rebuilt when pyproject.toml changes; the package is reinstalled (not editable:
# the fixed repo layout maps onto the `newswatch.*` import names only in an installed copy)
# whenever a source file changes.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "newswatch needs Python >= 3.11, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet '.[all,dev]'
	@touch $@

$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(BIN)/pip install --quiet --no-deps --force-reinstall .
	@rm -rf build
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/newswatch demo

lint: install
	$(BIN)/ruff check services shared tests bench setup.py
	$(BIN)/ruff format --check services shared tests bench setup.py
	$(BIN)/mypy -p newswatch
	$(BIN)/mypy tests bench setup.py

# Deployment files: yamllint, promtool check config/rules and the alert rules' unit tests.
lint-deploy: install
	BIN=$(BIN) deploy/lint.sh

# Fault injection against the whole pipeline at full size (5 kills per service, the broker
# paused 30 s, the receiver down 2 minutes, the broker restarted empty); `make test` runs the
# same scenarios at a quick size. Each prints expected / received / missing / duplicated alerts.
test-chaos: install
	$(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The browser tests drive Debian's Chromium: installed here when missing (CI fails without it).
browser:
	@tests/support/need_browser.sh

# Tests start what they need themselves (the broker on a free port, HTTP servers on 127.0.0.1).
test: lint lint-deploy browser
	$(BIN)/pytest -m "not chaos" --durations=15 $(PYTEST_ARGS)

# Rewrites the generated parts of docs/reference (settings, commands, routes, metrics) from the
# code; tests/unit/test_docs.py fails while they differ.
docs: install
	$(BIN)/python -m tests.support.reference --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache artifacts
