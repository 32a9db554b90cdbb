# One command sets up and runs the main job, one sets up and runs the tests.
#   make demo   - install into .venv and run `asewatch demo`
#   make test   - install system packages (Debian, as root) and .venv, then lint, type-check and test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test setup system lint typecheck pytest bench clean

demo: system setup  ## Run the incident demo on the simulated dataserver (installs FreeTDS + unixODBC first)
	$(BIN)/asewatch demo

test: system setup lint typecheck pytest  ## Set up everything and run every check

setup: $(VENV)/.installed  ## Create the virtual environment and install asewatch with its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

system:  ## Debian packages the agent and the tests use (prometheus, FreeTDS ODBC, OpenSSH, zstd, age, openssl)
	scripts/install-system-packages

lint:
	$(BIN)/ruff check monitor collectors tests bench
	$(BIN)/ruff format --check monitor collectors tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest -q

bench: setup  ## Benchmarks (not tests): print ratios against a baseline measured in the same run
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/errorlog.py
	$(BIN)/python bench/errorlog_catchup.py
	$(BIN)/python bench/suspects.py
	$(BIN)/python bench/tail_latency.py
	$(BIN)/python bench/process_detect.py
	$(BIN)/python bench/agent_detect.py
	$(BIN)/python bench/agent_cost.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
