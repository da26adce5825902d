# `make run` installs into a cached virtualenv and starts the app; `make test` runs the test suite.
PYTHON ?= python3
# The hash covers the interpreter too: a venv made by Python 3.11 is not reused by 3.12.
REQS_HASH := $(shell ($(PYTHON) --version; cat requirements.txt requirements-nodeps.txt constraints.txt) | sha256sum | cut -c1-12)
VENV ?= $(HOME)/.cache/alignment-lab/venv-$(REQS_HASH)
PY := $(VENV)/bin/python

.PHONY: install run test bench space-check
install: $(VENV)/.installed
# The venv's path carries a hash of the requirement files, so a changed file means a new venv; no mtime checks
# (a fresh clone's files are all new).
$(VENV)/.installed:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

run: install
	$(PY) app.py $(ARGS)

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(ARGS)

bench: install
	HF_HUB_OFFLINE=1 $(PY) -m bench $(ARGS)

# Asks the registry for a CPython 3.12 manylinux x86-64 (or pure Python) wheel of every pin; names each one lacking it.
space-check: install
	$(PY) -m bench.space_check $(ARGS)
