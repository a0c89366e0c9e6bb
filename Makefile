# Baton: `make run` starts it, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types unit bench services clean compile mutate

# An editable install as one plain path in a .pth file: pyproject's `package-dir = {"" = "."}`
# makes setuptools write that (nothing to announce), instead of an import hook that costs
# every `baton` command start-up time (and a warning), or the deprecated compat mode.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Bytecode for Baton's own modules: where PYTHONDONTWRITEBYTECODE is set, nothing else
# writes it, and every `baton` command would compile them again (about 0.3 s; the test
# suite starts a thousand of them: 5 CPU-minutes on a clean clone).
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
# Work stealing: a worker that runs out takes tests queued for a busy one, so the slow
# process tests do not leave one worker finishing alone (660 s against 705 s here).
TEST_WORKERS ?= 4

test: $(STAMP) compile services lint types
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP) compile
	$(BIN)/python -m bench

# Mutation testing ([tool.mutmut] in pyproject.toml): mutmut changes engine/params.py and
# engine/durations.py one small edit at a time and runs their unit tests against each
# change; a change no test notices is a rule no test pins (docs/mutation.md). It starts
# from a fresh mutants/ (mutmut would reuse a stale copy), then prints the share of
# changes killed per module and fails below MUTATE_MIN percent.
MUTATE_JOBS ?= 2
MUTATE_MIN  ?= 90

mutate: $(STAMP)
	rm -rf mutants && mkdir mutants
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) > mutants/run.log 2>&1 \
	  || { tail -n 40 mutants/run.log; exit 1; }
	$(BIN)/mutmut results
	@$(BIN)/mutmut results --all true | awk -v min=$(MUTATE_MIN) ' \
	  { name = $$1; sub(/:$$/, "", name); n = split(name, part, "."); module = part[1]; \
	    for (i = 2; i < n; i++) module = module "." part[i]; \
	    total[module]++; if ($$2 == "killed" || $$2 == "timeout") killed[module]++ } \
	  END { low = 0; for (m in total) { score = 100 * killed[m] / total[m]; \
	          printf "%-18s %5.1f%% killed (%d of %d)\n", m, score, killed[m], total[m]; \
	          if (score < min) low = 1 } \
	        if (low) { printf "below %d%%: see docs/mutation.md\n", min; exit 1 } }'

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants
