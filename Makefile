# fleetbox: `make sim` runs the product, `make test` runs every test.
# Both install what they need on a fresh machine (virtualenv, pinned packages, Debian tools).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.sysdeps-4
SIM_ARGS ?=

.PHONY: sim sim-forever sim-qemu appliance test bench image clean deps cloud-serve

deps: $(STAMP) $(SYSDEPS_STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# net-snmp's tools and agent are peers in tests and benchmarks (Debian packages).
# QEMU runs the qemu-x86_64 appliance; nmap port-scans it (tests/boards/test_qemu_appliance.py).
# PostgreSQL's server: the cloud's tests and bench start throwaway clusters of their own
# (tests/cloud/pgcluster.py), so the package must not create or start a system one.
# Chromium: the dashboard's browser test drives Debian's build through Playwright (no browser download).
$(SYSDEPS_STAMP): | $(STAMP)
	@command -v snmpd >/dev/null && command -v snmpbulkwalk >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq snmp snmpd >/dev/null; }
	@command -v qemu-system-x86_64 >/dev/null && command -v nmap >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      qemu-system-x86 nmap >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common >/dev/null && \
	  sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium fonts-dejavu-core >/dev/null; }
	touch $@

sim: deps
	$(PY) -m simulator run $(SIM_ARGS)

# Keeps the simulation running until Ctrl-C; type fault commands on stdin (`help` lists them).
# Scripted faults: make sim SIM_ARGS="--fault 20:cable-pull --fault 40:cable-plug" (README).
sim-forever: deps
	$(PY) -m simulator run --forever $(SIM_ARGS)

# The whole simulation with the box as the QEMU appliance, in a network namespace (root).
sim-qemu: deps
	$(PY) -m simulator run --board qemu-x86_64 --state var/sim-qemu $(SIM_ARGS)

# The qemu-x86_64 board's kernel + initramfs from the Debian packages pinned in its packages.lock.
appliance: deps
	$(VENV)/bin/fbtool appliance --list

# Two pytest workers, a test file each at a time (most of the suite waits on simulated
# boxes and clouds, so two files at once halve the wall time on two cores). Files that
# bind fixed loopback addresses use their own ports, so any two of them can run together.
test: deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile tests

bench: deps
	$(PY) bench/run_all.py

# The fleet service on its own (docs/cloud.md); CLOUD_CONFIG names its TOML file.
cloud-serve: deps
	$(VENV)/bin/fleetbox-cloud serve --config $(CLOUD_CONFIG)

image: deps
	$(VENV)/bin/fbtool build -o build/firmware.fbi

clean:
	rm -rf build var .pytest_cache
