# Everything a fresh machine needs is installed by these targets (Python 3.10+, npm).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: demo test lint typecheck pytest install node bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The Node iii-sdk (interop peer), installed locally, never globally.
$(NODE_STAMP): $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

## demo: set up and run a demo worker against an embedded engine
demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check iii_rx tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict iii_rx

pytest: $(STAMP) $(NODE_STAMP)
	OTEL_ENABLED=false $(BIN)/python -m pytest -q

## test: set up and run the whole suite (lint, types, tests)
test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_throughput.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
