# sama — every job is a target; `make help` lists them.
# `make test` and `make demo` install what they need into .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMA   := $(BIN)/sama
# The CPU build of torch; on a GPU machine install your CUDA build of torch first
# (see README, "GPU install"), then `make install TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
OUT    ?= out
PYTEST_ARGS ?=

.PHONY: help install test test-fast lint format bench demo clean

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install sama with its dev extras

test: $(STAMP)  ## run the test suite (CPU, a few minutes)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check sama_cli tests

format: $(STAMP)  ## ruff format + import sort
	$(BIN)/ruff check --fix --select I sama_cli tests
	$(BIN)/ruff format sama_cli tests

bench: $(STAMP)  ## speed and memory benchmarks, written to $(OUT)/bench/bench.md
	$(BIN)/python -m sama_cli.benchmarks -o $(OUT)/bench

clean:  ## remove outputs (keeps .venv)
	rm -rf $(OUT) .pytest_cache
