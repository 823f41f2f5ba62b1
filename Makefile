# Two commands on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what they need: Debian's influxdb and mariadb-server, and Python packages in .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all install system-packages venv test demo stop bench dashboards clean

all: test

install: system-packages venv

# Debian's own servers; the project starts private instances of them, never the system ones.
system-packages:
	@if ! command -v influxd >/dev/null || ! command -v influx >/dev/null || ! command -v mariadb-install-db >/dev/null; then \
	  echo "installing influxdb and mariadb-server from Debian"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    influxdb influxdb-client mariadb-server >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) demo.py

stop:
	@[ -x $(PY) ] && $(PY) demo.py --stop || true

bench: install
	$(PY) bench/bench.py

dashboards: install
	$(PY) dashboards/generate.py

clean: stop
	rm -rf var data .pytest_cache
