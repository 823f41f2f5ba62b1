# Two commands on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what they need: Debian's influxdb and mariadb-server, and Python packages in .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LIBFAKETIME := /usr/lib/$(shell uname -m)-linux-gnu/faketime/libfaketime.so.1

.PHONY: all install system-packages venv lint test test-future demo stop bench backtest soak dashboards clean

all: test

install: system-packages venv

# Debian's own servers; the project starts private instances of them, never the system ones.
system-packages:
	@if ! command -v influxd >/dev/null || ! command -v influx >/dev/null || \
	    ! command -v mariadb-install-db >/dev/null || [ ! -e $(LIBFAKETIME) ] || \
	    ! command -v openssl >/dev/null; then \
	  echo "installing influxdb, mariadb-server, faketime and openssl from Debian"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    influxdb influxdb-client mariadb-server faketime openssl >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q

# The same suite with Python's clock 400 days ahead (libfaketime): no test may depend on the
# calendar. MariaDB inherits the fake clock; InfluxDB (Go, which libfaketime cannot reach) keeps
# the real one, as a server does when a client's clock is off.
# FAKETIME_FORCE_MONOTONIC_FIX=1: without it Python 3.11's time.sleep fails with EINVAL.
test-future: install
	FAKETIME=+400d LD_PRELOAD=$(LIBFAKETIME) FAKETIME_FORCE_MONOTONIC_FIX=1 $(PY) -m pytest -q

demo: install
	$(PY) demo.py

stop:
	@[ -x $(PY) ] && $(PY) demo.py --stop || true

bench: install
	$(PY) bench/bench.py

# Notification quality against labelled simulated events (BENCHMARKS.md, Backtest).
backtest: install
	$(PY) bench/backtest.py

# 300 slots against the simulator with random faults; every slot checked, 0 lost, 0 duplicated.
soak: install
	$(PY) bench/soak.py --slots 300 --markdown

dashboards: install
	$(PY) dashboards/generate.py

clean: stop
	rm -rf var data .pytest_cache
