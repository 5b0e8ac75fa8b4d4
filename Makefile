# Floorwatch developer targets. `make test` is the one command that sets up and runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUNTIME = $(VENV)/.runtime
STAMP   = $(VENV)/.installed
BUILD_INPUTS = pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd)

.PHONY: test test-installed lint demo demo-packages bench dashboards clean system-packages

## test: install what the tests need (Debian packages, a virtualenv with the package and its test extras), run them all
test: system-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

## test-installed: the same suite against a regular (non-editable) install of the package in .venv-installed,
## so that what `pip install .` puts in site-packages (and only that) is what the tests import
INSTALLED = .venv-installed
test-installed: system-packages $(INSTALLED)/.installed
	$(INSTALLED)/bin/python -m pytest -p no:cacheprovider

$(INSTALLED)/.installed: $(BUILD_INPUTS) $(shell git ls-files edge drivers gateway bridge dashboards 2>/dev/null)
	$(PYTHON) -m venv $(INSTALLED)
	$(INSTALLED)/bin/pip install -q '.[test,bench,dashboards]'
	touch $@

system-packages:
	@bash tests/system-packages.sh

# Reinstall (and recompile the Cython core) only when the build inputs change. The demo needs only the
# package and its runtime dependencies ($(RUNTIME)); the tests add the test, benchmark and dashboard extras.
$(RUNTIME): $(BUILD_INPUTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP): $(RUNTIME)
	$(BIN)/pip install -q -e '.[test,bench,dashboards]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

## demo: the gateway on simulated instruments (the README's first command)
demo: demo-packages $(RUNTIME)
	$(BIN)/floorwatch demo

demo-packages:
	@bash tests/system-packages.sh demo

## bench: the benchmarks recorded in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python bench/bench_stats.py
	$(BIN)/python bench/bench_gateway.py

## dashboards: regenerate the committed Grafana JSON deterministically
dashboards: $(STAMP)
	$(BIN)/python -m floorwatch.dashboards.generate --config gateway/example.toml --out dashboards

## test-arm64 / test-armhf: build and run the non-service tests in a Raspberry Pi architecture's Debian root
## under qemu (slow, needs root; see docs/deploy.md)
include deploy/test-arm64.mk

clean:
	rm -rf $(VENV) $(INSTALLED) build *.egg-info edge/*.so .pytest_cache .hypothesis
