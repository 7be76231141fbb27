# Quick start: `make demo` (main experiment, laptop size) and `make test`.
# Both create ./.venv and install the package with its dev extras on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= cpu

.PHONY: setup demo test test-fast lint reproduce

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python experiments/underspecification.py --preset $(PRESET) --run-name quickstart --overwrite

# Test workers: one per core (XLA's CPU compiler, most of a test's time, is single-threaded);
# each test file runs whole on one worker, so its tests share their compiled programs.
WORKERS ?= auto

test: setup
	$(BIN)/ruff check .
	VPL_JAX_PROGRESS=0 $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

# The fast tier, for iterating: every test not marked slow (learning runs, experiment CLIs).
test-fast: setup
	VPL_JAX_PROGRESS=0 $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

reproduce: setup
	$(BIN)/python experiments/reproduce.py --preset $(PRESET)
