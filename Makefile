# Baton: `make run` starts it, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types unit bench services clean compile

# An editable install as one plain path in a .pth file: pyproject's `package-dir = {"" = "."}`
# makes setuptools write that (nothing to announce), instead of an import hook that costs
# every `baton` command start-up time (and a warning), or the deprecated compat mode.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Bytecode for Baton's own modules: where PYTHONDONTWRITEBYTECODE is set, nothing else
# writes it, and every `baton` command would compile them again (about 0.3 s).
compile: $(STAMP)
	@$(BIN)/python -m compileall -q bot engine storage

run: $(STAMP) compile
	$(BIN)/baton serve

services:
	@bash .ci/services

lint: $(STAMP)
	$(BIN)/ruff check bot engine storage tests bench
	$(BIN)/ruff format --check bot engine storage tests bench

types: $(STAMP)
	$(BIN)/mypy

# The suite runs in 4 worker processes (pytest-xdist): most tests wait on processes,
# sockets and databases rather than the CPU, so 4 fit on 2 cores. Every test has its own
# tmp dir, SQLite file or PostgreSQL schema, and free ports. TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 4

test: $(STAMP) services lint types
	$(BIN)/pytest -n $(TEST_WORKERS)

bench: $(STAMP) compile
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
