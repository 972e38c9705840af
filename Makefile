# The two commands a newcomer needs: `make run` and `make test`. Both set up whatever is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LENS := $(VENV)/bin/lens
HOST ?= 127.0.0.1
PORT ?= 8080
WORKERS ?= 2
# make up CATALOG=postgres VECTORS=milvus: the fleet shape with those backends (scripts/fleet.sh).
CATALOG ?=
VECTORS ?=

.PHONY: setup run test lint bench up down demo-catalog schema clean

setup:
	@scripts/setup.sh

run: setup
	@$(LENS) demo-catalog --if-empty
	@$(LENS) serve --embedded --host $(HOST) --port $(PORT)

test: setup
	@scripts/ensure-redis.sh
	@scripts/ensure-postgres.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@scripts/ensure-redis.sh
	$(PY) -m bench

up: setup
	@scripts/ensure-redis.sh
	@[ -n "$(CATALOG)$(VECTORS)" ] || $(LENS) demo-catalog --if-empty
	@CATALOG=$(CATALOG) VECTORS=$(VECTORS) scripts/fleet.sh up $(WORKERS) $(HOST) $(PORT)

down:
	@scripts/fleet.sh down

schema: setup
	$(PY) -c "from pathlib import Path; from lens.types import write_json_schema; write_json_schema(Path('docs/analyze-result.schema.json'))"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
