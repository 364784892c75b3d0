# The two commands of the quick start: `make up` and `make test`.
# Both create .venv and install the project when it is missing or older than pyproject.toml.
# Python 3.11 to 3.13: the newest python3.1x (x >= 11) on the PATH that runs (a pyenv shim
# may stand for a version not installed), or PYTHON=... to choose.
PYTHON ?= $(shell for v in 13 12 11; do p=$$(command -v python3.$$v) && "$$p" -c '' 2>/dev/null \
	&& { echo "$$p"; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test unit lint bench up down clean check-wheels

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || test -n "$(PYTHON)" || { echo "error: no python3.13, \
	python3.12 or python3.11 on the PATH; install one, or run make PYTHON=/path/to/python3.x" >&2; \
	exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check --quiet src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

# The fast loop while working: everything but the tests that start real processes.
unit: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not integration" -p no:cacheprovider

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

# Every pinned dependency (runtime and test), and what they need, installs from wheels alone on
# each supported Python (x86_64 manylinux). Needs PyPI, so it is not part of `make test`.
WHEEL_PYTHONS := 3.11 3.12 3.13
WHEEL_PLATFORMS := manylinux2014_x86_64 $(foreach g,17 24 26 27 28 31 34 35 39,manylinux_2_$(g)_x86_64)
check-wheels: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	pins=$$($(VENV)/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(" ".join(p["dependencies"] + p["optional-dependencies"]["test"]))') && \
	for v in $(WHEEL_PYTHONS); do \
		echo "Python $$v: pip download --only-binary=:all: $$pins"; \
		$(VENV)/bin/python -m pip download --quiet --disable-pip-version-check \
			--only-binary=:all: --implementation cp --python-version $$v \
			$(foreach p,$(WHEEL_PLATFORMS),--platform $(p)) \
			--dest "$$tmp/$$v" $$pins || { echo "error: no wheels for Python $$v (above)" >&2; exit 1; }; \
	done && echo "every pinned dependency has wheels for Python $(WHEEL_PYTHONS)"

up: $(STAMP)
	$(VENV)/bin/deoss up

down: $(STAMP)
	$(VENV)/bin/deoss down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
