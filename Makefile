# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each installs what it needs: the Debian Prometheus stack and a virtualenv with npuobs.
VENV ?= .venv
PYTHON ?= python3
NPUOBS := $(VENV)/bin/npuobs
DEMO_ARGS ?=

.PHONY: demo test setup lint bench clean

demo: setup
	$(NPUOBS) demo $(DEMO_ARGS)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

setup: $(VENV)/.installed
	./scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python bench/bench_kernels.py
	$(VENV)/bin/python bench/bench_sim.py
	$(VENV)/bin/python bench/bench_exporter.py
	$(VENV)/bin/python bench/bench_instrumentation.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
