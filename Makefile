# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-reliability lint audit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vaepipe demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=30

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not ray and not e2e and not reliability"

# Part of `make test`; alone: exit paths, registry races, hostile artifacts, Ray/MLflow exposure.
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -m reliability --durations=0

# pip-audit over the installed set; exit 3 (and says so) when its database is unreachable.
audit: $(STAMP)
	$(BIN)/python tools/audit.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
