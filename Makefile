# ssehub: `make run` starts the hub with the demo settings, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench clean venv docs soak

# What running needs: the hub and its runtime dependencies, no test tools.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing ssehub and its runtime dependencies into $(VENV) (about a minute the first time)"
	@{ $(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e . 2>&1; \
	   echo $$? > $(VENV)/.pip-status; } | tee $(VENV)/pip.log | grep --line-buffered -E '^(Collecting|Successfully)'; \
	   status=$$(cat $(VENV)/.pip-status); [ "$$status" = 0 ] || { tail -n 20 $(VENV)/pip.log; exit "$$status"; }
	@touch $(STAMP)

# The test and lint tools on top (Playwright, schemathesis, ruff, ...), for `make test`.
$(TEST_STAMP): $(STAMP)
	@echo "==> installing the test tools into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --progress-bar off -e '.[test]'
	@touch $(TEST_STAMP)

venv: $(TEST_STAMP)

run: $(STAMP)
	@echo "==> starting the hub with the demo settings: demo page at http://$(HOST):$(PORT)/ (Ctrl-C stops it)"
	@$(BIN)/ssehub serve --demo --host $(HOST) --port $(PORT)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The configuration reference in docs/operations.md is generated from the settings model.
docs: $(STAMP)
	$(BIN)/ssehub config-docs --write docs/operations.md

# Parallel workers: most test time is waiting (browsers, hub processes, outages), not CPU, so
# more workers than cores pays. Tests marked slow start first; xdist_group keeps a module together.
TEST_WORKERS ?= 3
test: $(TEST_STAMP) lint
	. scripts/test-services.sh && $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
	  --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# ssehub against a FastAPI + sse-starlette reference peer on loopback, e.g. `make bench BENCH_ARGS="--n 10000 --save"`:
# the stream scenarios (bench/run.py), then hub CPU per publish beside the peer and a bare floor.
BENCH_ARGS ?= --n 1000
PUBLISH_BENCH_ARGS ?= --count 10000
bench: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/publish_cpu.py $(PUBLISH_BENCH_ARGS)

# 2,000 streams, steady publishing, 10% reconnecting every minute, 10 minutes: docs/soak.png.
SOAK_ARGS ?= --connections 2000 --minutes 10
soak: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/soak.py $(SOAK_ARGS) -o docs/soak.png --json bench/results/soak.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
