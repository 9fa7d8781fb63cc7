# The one entry point. Every target bootstraps what it needs on a fresh machine.
# Python 3.12+ (Icechunk 2.x needs it; the Lambda image runs 3.12): found or a clear message
PY ?= $(shell scripts/find_python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STORE ?= out/archive
PREVIEW ?= $(dir $(STORE))preview.png
EVALUATION ?= $(dir $(STORE))evaluation.png
# real labelled DPIs (not in the repository): make run quotes the baseline on them too when present
REAL_DPIS ?= ../shared/data/real_glitch_grb_dpis.npz
BEGIN ?= 2024-03-01
# END is exclusive: the default is all of March 2024
END ?= 2024-04-01
WORKERS ?= 2
SOURCE ?= fake
PYTEST_ARGS ?=

.PHONY: install lint test run run-local stop-local localstack bench image-test clean

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo 'no Python 3.12+ found (see scripts/find_python.sh)' >&2; exit 1; }
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,infra]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests handler infra benchmarks
	$(BIN)/ruff format --check src tests handler infra benchmarks

# LocalStack (pinned, own venv, or its container where Docker runs): installed here, started and
# stopped by the test session itself.
localstack:
	scripts/localstack.sh install

test: lint localstack
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# SOURCE=fake (default): fake Swift API + synthetic HEASARC tree, no network needed.
# SOURCE=real: the real Swift API and the public HEASARC archive.
run: $(STAMP)
ifeq ($(SOURCE),real)
	$(BIN)/batglitch run --begin $(BEGIN) --end $(END) --store $(STORE) --workers $(WORKERS) --preview $(PREVIEW) --grbs
else
	$(BIN)/batglitch demo --begin $(BEGIN) --end $(END) --store $(STORE) --workers $(WORKERS) --preview $(PREVIEW)
endif
	$(BIN)/batglitch evaluate $(STORE) --out $(EVALUATION) $(if $(wildcard $(REAL_DPIS)),--real $(REAL_DPIS))

run-local: $(STAMP) localstack
	scripts/localstack.sh start
	PYTHONPATH=infra $(BIN)/python -m batglitch_infra.local --begin $(BEGIN) --end $(END) --workers $(WORKERS)

stop-local:
	scripts/localstack.sh stop

bench: $(STAMP) localstack
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_run.py
	PYTHONPATH=infra $(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_plan.py

image-test: $(STAMP) localstack
	scripts/image_test.sh

clean:
	rm -rf out .pytest_cache .ruff_cache infra/cdk.out
