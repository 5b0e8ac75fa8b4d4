# Floorwatch developer targets. `make test` is the one command that sets up and runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: test lint demo bench dashboards test-arm64 clean system-packages

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

## demo: the gateway on simulated instruments (the README's first command does the same)
demo: $(STAMP)
	$(BIN)/floorwatch demo

## bench: the benchmarks recorded in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python bench/bench_stats.py
	$(BIN)/python bench/bench_gateway.py

## dashboards: regenerate the committed Grafana JSON deterministically
dashboards: $(STAMP)
	$(BIN)/python -m dashboards.generate --config gateway/example.toml --out dashboards

## test-arm64: build and run the non-service tests in an arm64 Debian root under qemu (slow; see docs/deploy.md)
test-arm64:
	bash deploy/test-arm64.sh

clean:
	rm -rf $(VENV) build *.egg-info edge/*.so .pytest_cache .hypothesis
