# `make demo` and `make test` do all set-up (each creates .venv if needed).
# `make lint` (style and types), `make test-all` (with the slow tests) and `make docs` are what CI adds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint docs install benchmark clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pyro-vae demo

# The fast suite; the tests marked `slow` (several processes, large files, experiment scripts) run in test-all.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pyro_vae tests experiments docs/api
	$(BIN)/ruff format --check pyro_vae tests experiments docs/api
	$(BIN)/mypy

# The tutorials (docs/tutorials, executed) and the API reference from the docstrings; any warning or
# failing cell fails the build.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs/api docs/api/_build/html

benchmark: $(STAMP)
	$(BIN)/python experiments/benchmarks/train_step.py
	$(BIN)/python experiments/benchmarks/log_likelihood.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/api/_build
