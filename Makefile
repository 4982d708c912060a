# The two commands of README.rst (make run, make test) and their helpers.
# Every target creates .venv on first use, so a fresh machine needs only
# Python 3.11 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint typecheck pytest bench bench-quick bench-load soak clean help telnet-client

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record that the install ran against the current setup.cfg.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	@echo "installing guessgame into $(VENV) (a minute on the first run)"
	$(BIN)/python -m pip install --quiet --editable .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python setup.cfg pyproject.toml
	@echo "installing guessgame and its test tools into $(VENV) (a minute on the first run)"
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed  ## install and run the daemon in the foreground (ARGS="--range 1-100")
	$(BIN)/twistd --nodaemon --pidfile= guessgame $(ARGS)

test: $(VENV)/.installed-test telnet-client  ## install with the test extra, lint, type-check, run every test
	$(BIN)/ruff check .
	$(BIN)/mypy guessgame
	$(BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.installed  ## the daemon against the bare Twisted ceiling: the whole matrix (a few minutes)
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.installed  ## the N=1000 rows of the benchmark only
	$(BIN)/python -m bench.run --quick $(ARGS)

bench-load: $(VENV)/.installed  ## CPU per guess at a fixed load: N=1000, a guess each per 50 ms (4 minutes)
	$(BIN)/python -m bench.run --fixed-load $(ARGS)

# The real-telnet test needs Debian's telnet client: install it where we
# can (root with apt-get, no questions asked), else that one test is skipped.
telnet-client:
	@command -v telnet >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing telnet for the telnet test"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq telnet </dev/null >/dev/null 2>&1 || \
	    { apt-get update -qq </dev/null >/dev/null 2>&1 && \
	      apt-get install -y -qq telnet </dev/null >/dev/null 2>&1; } || \
	    echo "could not install telnet: the telnet test will be skipped"; \
	  else \
	    echo "telnet is missing and cannot be installed here: the telnet test will be skipped"; \
	  fi; }

soak: $(VENV)/.installed  ## not in CI: 5,000 connections, 100 flooding, 50 playing (ARGS="--duration 60")
	$(BIN)/python bench/soak.py $(ARGS)

clean:  ## remove the virtualenv, caches and build output
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .hypothesis twisted/plugins/dropin.cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
