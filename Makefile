# Spanda: two commands on a fresh machine with Python 3.11.
#   make demo   install, seed the demo DB, materialize the graph, serve the UI on 127.0.0.1:3000
#   make test   install, lint, type-check, start test servers, run the whole suite, stop them
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed

.PHONY: install label-studio superset demo test lint typecheck pytest bench lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Label Studio's server in a virtualenv of its own (its pins clash with ours): the tests
# start it on 127.0.0.1; a site runs it from this venv or from its own image.
LS_VENV  := .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed
$(LS_STAMP): requirements-label-studio.lock $(STAMP)
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(BIN)/uv pip sync -q --python $(LS_VENV)/bin/python requirements-label-studio.lock
	@touch $(LS_STAMP)

label-studio: $(LS_STAMP)

# Apache Superset in a virtualenv of its own (it pins SQLAlchemy < 2 and pandas < 2.2):
# the BI tests start it on 127.0.0.1; a site runs it from this venv or its own image.
SS_VENV  := .venv-superset
SS_STAMP := $(SS_VENV)/.installed
$(SS_STAMP): requirements-superset.lock $(STAMP)
	@test -x $(SS_VENV)/bin/python || $(PYTHON) -m venv $(SS_VENV)
	$(BIN)/uv pip sync -q --compile-bytecode --python $(SS_VENV)/bin/python requirements-superset.lock
	@touch $(SS_STAMP)

superset: $(SS_STAMP)

demo: install
	$(BIN)/spanda demo

lint: install
	$(BIN)/ruff format --check spanda_assets spanda_assets_tests benchmarks
	$(BIN)/ruff check spanda_assets spanda_assets_tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install label-studio superset
	scripts/ensure-system-packages
	DAGSTER_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/deid.py
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/wap.py --daemon
	$(BIN)/python benchmarks/active_learning.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/download.py
	$(BIN)/python benchmarks/access.py
	$(BIN)/python benchmarks/sql.py
	$(BIN)/python benchmarks/chain.py --repeat
	$(BIN)/python benchmarks/scale.py

# Re-resolve pinned versions after editing pyproject.toml dependencies.
lock: install
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --extra ray --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(BIN)/uv pip compile -q requirements-label-studio.in --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements-label-studio.lock
	$(BIN)/uv pip compile -q requirements-superset.in --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements-superset.lock

clean:
	rm -rf $(VENV) $(LS_VENV) $(SS_VENV) .spanda .pytest_cache .mypy_cache .ruff_cache
