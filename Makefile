# Every target sets up .venv itself, so a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format protos bench clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the local CPU wheel (a looser requirement pulls a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv with torch (CPU) and the project in editable mode.

demo: $(STAMP) ## Run the main job end to end on embedded defaults (synthetic data, CPU).
	$(BIN)/recsys demo

test: $(STAMP) ## Run the test suite (unit + integration with real Redis and gRPC).
	$(BIN)/pytest

lint: $(STAMP) ## ruff check, ruff format --check, mypy, the import contract (one-way layers).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP) ## Apply ruff's fixes and formatting.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

protos: $(STAMP) ## Regenerate serving/proto/ from protos/ (checked in; a test fails when stale).
	$(BIN)/python -m serving.protogen

bench: $(STAMP) ## Run the benchmarks (writes bench/results/).
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/export_latency.py
	$(BIN)/python bench/serve_load.py

clean: ## Remove the virtual environment and run outputs.
	rm -rf $(VENV) runs bench/.work
