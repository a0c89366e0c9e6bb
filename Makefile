# Baton: `make run` starts it, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types unit bench services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/baton serve

services:
	@bash .ci/services

lint: $(STAMP)
	$(BIN)/ruff check bot engine storage tests bench
	$(BIN)/ruff format --check bot engine storage tests bench

types: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) services lint types
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
