# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
# Both create .venv if it is missing and (re)install when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PLUGINS := $(wildcard transports/*/pyproject.toml)

.PHONY: test demo demo-core lint typecheck pytest bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The multi-host tests (tests/netns) need iproute2 and root; the script installs
# iproute2 when root and missing, and never fails: without them those tests skip.
# Likewise the ward-chat browser test needs Debian chromium + chromedriver.
pytest: $(STAMP)
	bash tools/ensure_netns_deps.sh
	sh tools/ensure_browser_deps.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# The main job: four daemons (two wards via mDNS, a specialist clinic over QUIC, a
# pharmacy over TCP) exchange messages and files; see docs/demo.md.
demo: $(STAMP)
	$(BIN)/python examples/federation_demo.py

# The log core alone, no daemons or network (seconds).
demo-core: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_log.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
