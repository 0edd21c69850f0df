# Everything a fresh machine needs is installed by these targets (Python 3.10+, npm).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

# The floors venv: every dependency at the lowest version pyproject.toml allows, each ">=X" of
# its `dependencies` pinned as "==X", so that a floor that no longer works fails `make test`.
FLOORS_VENV  := .venv-floors
FLOORS_BIN   := $(FLOORS_VENV)/bin
FLOORS_STAMP := $(FLOORS_VENV)/.installed
FLOORS_DEPS   = $(shell sed -n '/^dependencies = \[/,/^\]/p' pyproject.toml | grep -c '^ *"')
FLOORS        = $(shell sed -n '/^dependencies = \[/,/^\]/p' pyproject.toml \
                  | grep -o '"[][A-Za-z0-9_.-]*>=[^",<; ]*' | tr -d '"' | sed 's/>=/==/')
# What runs on the floors: the suites over the client, the wire, channels, operators, the engine,
# HTTP and telemetry, minus the Node peer, the user-side type check (it runs mypy, a tool of the main
# venv; what it checks does not depend on the floors) and what needs the official iii-sdk, whose own
# floors are above ours (constraints/floors_plugin.py leaves those out).
FLOORS_TESTS := tests/client tests/wire tests/channels tests/operators tests/engine tests/http tests/telemetry \
	--ignore=tests/channels/test_channel_interop_node.py --ignore=tests/client/test_user_types.py

.PHONY: demo test lint typecheck pytest floors install node bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Rebuilt from scratch when pyproject.toml changes: nothing left over from older pins.
$(FLOORS_STAMP): pyproject.toml
	@test "$(FLOORS_DEPS)" -eq "$(words $(FLOORS))" || { \
	  echo "pyproject.toml: every dependency needs a '>=' floor (found $(words $(FLOORS)) of $(FLOORS_DEPS))"; \
	  exit 1; }
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_BIN)/python -m pip install -q --upgrade pip
	$(FLOORS_BIN)/python -m pip install -q $(FLOORS) pytest pytest-asyncio pytest-timeout hypothesis uvloop
	$(FLOORS_BIN)/python -m pip install -q --no-deps -e .
	$(FLOORS_BIN)/python -m pip check
	touch $(FLOORS_STAMP)

# The Node iii-sdk (interop peer), installed locally, never globally.
$(NODE_STAMP): $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

# The demo needs iii_rx and its own dependencies only, not the test tools.
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(DEMO_STAMP)

## demo: set up and run a demo worker against an embedded engine
demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check iii_rx tests benchmarks examples constraints

typecheck: $(STAMP)
	$(BIN)/mypy --strict iii_rx

pytest: $(STAMP) $(NODE_STAMP)
	OTEL_ENABLED=false $(BIN)/python -m pytest -q

## floors: the client-side tests once more, with the lowest versions pyproject.toml allows
floors: $(FLOORS_STAMP)
	@echo "floors: $(FLOORS)"
	OTEL_ENABLED=false PYTHONPATH=constraints $(FLOORS_BIN)/python -m pytest -q -p floors_plugin \
	  $(FLOORS_TESTS)

## test: set up and run the whole suite (lint, types, tests, the floors run)
test: lint typecheck pytest floors

## bench: run every benchmark (short modes; BENCH_ARGS=--full for the scripts' defaults) and
## write the report docs/performance.md with its plots in docs/img/performance/
bench: $(STAMP)
	$(BIN)/python benchmarks/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(FLOORS_VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
