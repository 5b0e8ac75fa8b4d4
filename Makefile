# Floorwatch developer targets. `make test` is the one command that sets up and runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: test lint demo demo-packages bench dashboards clean system-packages

## test: install what the tests need (Debian packages, a virtualenv with the package and its test extras), run them all
test: system-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

system-packages:
	@bash tests/system-packages.sh

# Reinstall (and recompile the Cython core) only when the build inputs change.
$(STAMP): pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench,dashboards]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

## demo: the gateway on simulated instruments (the README's first command)
demo: demo-packages $(STAMP)
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
	rm -rf $(VENV) build *.egg-info edge/*.so .pytest_cache .hypothesis
