# make demo  -- synthetic MPD (or $MPD_DIR) -> Spark ETL -> CPU trainer -> evaluation
# make test  -- the linter and the formatter's check, then the test suite (what CI runs)
# Both create or reuse .venv and install what is missing; a second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Prebuilt torch-scatter/torch-sparse wheels (torch 2.13.0, CPython 3.11, x86_64), when present.
WHEELS ?= $(abspath ../shared/wheels)
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= demo
DEMO_PLAYLISTS ?= 3000

.PHONY: install install-pyg-sparse test demo clean-demo java

install: $(STAMP)

# The java Spark will run (JAVA_HOME's, else the first on PATH), and its major version.
java:
	@j="$${JAVA_HOME:+$$JAVA_HOME/bin/}java"; \
	v=$$("$$j" -version 2>&1 | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1); \
	[ -n "$$v" ] || { echo "error: Java not found ($$j). Spark needs Java 17: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)" >&2; exit 2; }; \
	[ "$$v" -ge 17 ] || { echo "error: $$j is Java $$v; Spark 4 needs Java 17 or newer: set JAVA_HOME to one (apt-get install openjdk-17-jre-headless)" >&2; exit 2; }

$(STAMP): pyproject.toml | java
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip --version >/dev/null
	@# Keep a torch that is already there (e.g. a CUDA build); otherwise take the pinned CPU wheel.
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "torch==$(TORCH_VERSION)"
	@# torch-scatter/torch-sparse (the pyg-sparse extra) serve only sampler=torch_sparse: taken from
	@# prebuilt wheels when they are at hand (CI has them), left out otherwise (make install-pyg-sparse).
	@$(PY) -c "import torch_sparse, torch_scatter" 2>/dev/null || { \
	    if [ -d "$(WHEELS)" ]; then \
	        echo "installing torch-scatter/torch-sparse from $(WHEELS)"; \
	        $(PIP) install --quiet --find-links "$(WHEELS)" torch-scatter==2.1.2 torch-sparse==0.6.18; \
	    else \
	        echo "no prebuilt wheels at $(WHEELS): torch-scatter/torch-sparse left out (only sampler=torch_sparse needs them; make install-pyg-sparse builds them, 15-25 minutes on 2 cores)"; \
	    fi; }
	$(PIP) install --quiet -e ".[dev]"
	@touch $(STAMP)

install-pyg-sparse: install
	$(PIP) install --quiet setuptools wheel
	$(PIP) install --no-build-isolation $(if $(wildcard $(WHEELS)),--find-links "$(WHEELS)") torch-scatter==2.1.2 torch-sparse==0.6.18

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

demo: install
	@DEMO_DIR="$(DEMO_DIR)" DEMO_PLAYLISTS="$(DEMO_PLAYLISTS)" PY="$(PY)" bash launch/demo.sh

clean-demo:
	rm -rf $(DEMO_DIR)
