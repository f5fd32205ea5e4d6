# ssehub: `make run` starts the hub with the demo settings, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench clean venv docs soak

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ssehub serve --demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The configuration reference in docs/operations.md is generated from the settings model.
docs: $(STAMP)
	$(BIN)/ssehub config-docs --write docs/operations.md

test: $(STAMP) lint
	. scripts/test-services.sh && $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ssehub against the seed-000 peer on loopback, e.g. `make bench BENCH_ARGS="--n 10000 --save"`.
BENCH_ARGS ?= --n 1000
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# 2,000 streams, steady publishing, 10% reconnecting every minute, 10 minutes: docs/soak.png.
SOAK_ARGS ?= --connections 2000 --minutes 10
soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/soak.py $(SOAK_ARGS) -o docs/soak.png --json bench/results/soak.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
