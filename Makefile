# Two commands do everything on a fresh machine with python3:
#   make demo   run the whole pipeline against the built-in PVS emulator
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/solar-monitor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/solar-monitor
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/solar-monitor
	$(BIN)/solar-monitor demo

# The suite waits on sockets, timeouts and child processes more than it computes, so it
# runs in more pytest-xdist workers than a 2-core machine has cores, a test file to a
# worker (its module fixtures, such as test_outages' simulated week, are built once).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4
test: $(VENV)/.test-deps
	$(BIN)/ruff check solar_monitor tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.test-deps
	$(BIN)/ruff check solar_monitor tests benchmarks

bench: $(BIN)/solar-monitor
	$(BIN)/python benchmarks/bench_run.py

clean:
	rm -rf $(VENV) demo-data
