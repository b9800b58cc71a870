# The project's two commands (see README.md):
#   make up    set everything up on a fresh machine and start imori (Redis, a worker,
#              the dashboard on http://127.0.0.1:8501)
#   make test  set everything up (Python packages, Debian's chromium and docker-compose)
#              and run the test suite
#   make test-quick  the tests not marked slow (no worker processes, no browser): the edit loop
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.imori-installed

.PHONY: setup system-deps up test test-quick bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	scripts/system-deps.sh

# make up HOST=0.0.0.0 PORT=8600 (or IMORI_HOST / IMORI_PORT in the environment)
HOST ?= $(or $(IMORI_HOST),127.0.0.1)
PORT ?= $(or $(IMORI_PORT),8501)

up: setup
	$(BIN)/imori up --host $(HOST) --port $(PORT)

# The suite runs on two pytest-xdist processes: a module stays on one of them, the modules
# that start worker processes or servers run one after another, the browser's beside them,
# and each process trains on its share of the cores (tests/conftest.py). XDIST= runs it in
# one process.
XDIST ?= -n 2 --dist loadgroup

test: setup system-deps
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-quick: setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m pip install --quiet opencv-python-headless  # seed 000's loader, for comparison
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
