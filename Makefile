# The two commands of the quick start: `make up` and `make test`.
# Both create .venv and install the project when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test lint bench up down clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check --quiet src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/core.py
	$(VENV)/bin/python bench/chain.py
	$(VENV)/bin/python bench/audit.py
	$(VENV)/bin/python bench/e2e.py
	$(VENV)/bin/python bench/upload.py
	$(VENV)/bin/python bench/gateway_memory.py
	$(VENV)/bin/python bench/repair.py

up: $(STAMP)
	$(VENV)/bin/deoss up

down: $(STAMP)
	$(VENV)/bin/deoss down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
