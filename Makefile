# The one entry point. Every target bootstraps what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STORE ?= out/archive.zarr
BEGIN ?= 2024-03-01
END ?= 2024-03-31
WORKERS ?= 2

.PHONY: install lint test run run-local stop-local bench image-test clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,infra]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests handler infra scripts
	$(BIN)/ruff format --check src tests handler infra scripts

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m batglitch.bench

run: $(STAMP)
	$(BIN)/batglitch demo --store $(STORE) --begin $(BEGIN) --end $(END) --workers $(WORKERS)

clean:
	rm -rf out .pytest_cache .ruff_cache cdk.out
