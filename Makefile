# fleetbox: `make sim` runs the product, `make test` runs every test.
# Both install what they need on a fresh machine (virtualenv, pinned packages, Debian tools).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.sysdeps
SIM_ARGS ?=

.PHONY: sim sim-forever test bench image clean deps

deps: $(STAMP) $(SYSDEPS_STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# net-snmp's tools and agent are peers in tests and benchmarks (Debian packages).
$(SYSDEPS_STAMP): | $(STAMP)
	@command -v snmpd >/dev/null && command -v snmpbulkwalk >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq snmp snmpd >/dev/null; }
	touch $@

sim: deps
	$(PY) -m simulator run $(SIM_ARGS)

# Keeps the simulation running until Ctrl-C; type fault commands on stdin (`help` lists them).
# Scripted faults: make sim SIM_ARGS="--fault 20:cable-pull --fault 40:cable-plug" (README).
sim-forever: deps
	$(PY) -m simulator run --forever $(SIM_ARGS)

test: deps
	$(PY) -m pytest tests

bench: deps
	$(PY) bench/run_all.py

image: deps
	$(VENV)/bin/fbtool build -o build/firmware.fbi

clean:
	rm -rf build var .pytest_cache
