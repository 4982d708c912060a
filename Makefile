# The two commands of README.rst (make run, make test) and their helpers.
# Every target creates .venv on first use, so a fresh machine needs only
# Python 3.11 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run play admin test lint typecheck pytest bench bench-quick bench-load soak clean help test-tools postgresql-server

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  make %-12s %s\n", $$1, $$2 }'

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

# exec: Ctrl-C reaches the daemon itself, with no shell between that could
# die of it; the daemon stops in order and exits 0, so make prints nothing.
run: $(VENV)/.installed  ## install and run the daemon in the foreground (ARGS="--range 1-100")
	exec $(BIN)/twistd --nodaemon --pidfile= guessgame $(ARGS)

# The clients, installed into .venv by the first make run (or make play):
# no need to activate the venv for these two.
play: $(VENV)/.installed  ## play from this terminal (ARGS="--auto --name bob", ARGS="--host HOST")
	@$(BIN)/guessgame-play $(ARGS)

admin: $(VENV)/.installed  ## the admin client: a command (ARGS=who, ARGS="kick 7") or, without, the console
	@$(BIN)/guessgame-admin $(ARGS)

test: $(VENV)/.installed-test test-tools postgresql-server  ## install with the test extra, lint, type-check, run every test
	$(BIN)/ruff check .
	$(BIN)/mypy guessgame
	$(BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.installed  ## the daemon against the bare Twisted ceiling: the whole matrix (a few minutes)
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.installed  ## the N=1000 rows of the benchmark only
	$(BIN)/python -m bench.run --quick $(ARGS)

bench-load: $(VENV)/.installed  ## CPU per guess at a fixed load: N=1000, a guess each per 50 ms (4 minutes)
	$(BIN)/python -m bench.run --fixed-load $(ARGS)

# The real-telnet, netcat and browser tests need Debian's telnet,
# netcat-openbsd, and chromium with chromium-driver:
# install them where we can (as root, with apt-get, no questions asked),
# else those tests are skipped and say why.
define install-tool
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(2) for the $(1) tests (apt-get, as root)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq $(2) </dev/null >/dev/null 2>&1 || \
	    { apt-get update -qq </dev/null >/dev/null 2>&1 && \
	      apt-get install -y -qq $(2) </dev/null >/dev/null 2>&1; } || \
	    echo "could not install $(2): the $(1) tests will be skipped"; \
	  else \
	    echo "$(1) is missing and cannot be installed here: the $(1) tests will be skipped"; \
	  fi; }
endef

test-tools:
	$(call install-tool,telnet,telnet)
	$(call install-tool,nc,netcat-openbsd)
	$(call install-tool,chromedriver,chromium chromium-driver)

# The PostgreSQL tests start a server of their own from Debian's postgresql
# package (initdb and pg_ctl, not on PATH there): install it where we can, as
# the tools above, else
# those tests are skipped and say why.
postgresql-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing postgresql for the PostgreSQL tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq postgresql </dev/null >/dev/null 2>&1 || \
	    { apt-get update -qq </dev/null >/dev/null 2>&1 && \
	      apt-get install -y -qq postgresql </dev/null >/dev/null 2>&1; } || \
	    echo "could not install postgresql: the PostgreSQL tests will be skipped"; \
	  else \
	    echo "postgresql is missing and cannot be installed here: the PostgreSQL tests will be skipped"; \
	  fi; }

soak: $(VENV)/.installed  ## not in CI: 5,000 connections, 100 flooding, 50 playing (ARGS="--duration 60")
	$(BIN)/python bench/soak.py $(ARGS)

clean:  ## remove the virtualenv, caches and build output
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .hypothesis twisted/plugins/dropin.cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
