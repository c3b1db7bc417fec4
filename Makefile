# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plasticlab run hebb-phase --quick --out runs/hebb-phase-quick
	@echo "Demo done: open $(CURDIR)/runs/hebb-phase-quick/report.md (figures beside it)"

# ruff (lint + format) and mypy run before the tests, so CI fails on a finding as it fails on a test.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples docs/example_study.py
	$(VENV)/bin/ruff format --check src tests benchmarks examples docs/example_study.py
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(PY) -m pytest -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks all

clean:
	rm -rf $(VENV) runs .pytest_cache
