# chat-storage: `make run` starts the service on SQLite + ./data; `make test` runs everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit clean openapi bench e2e-uvicorn

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/chat-storage serve --server granian

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy .

test: lint typecheck
	$(BIN)/pytest
	$(MAKE) e2e-uvicorn

# the service must keep working under uvicorn too: the real-server tests once more on it
# (SQLite and memory; the metadata backends do not depend on the HTTP server)
e2e-uvicorn: $(STAMP)
	CHAT_STORAGE_SERVER=uvicorn $(BIN)/pytest test/e2e -m 'not postgres'

# the committed OpenAPI document; test/api/test_openapi.py fails while it is stale
openapi: $(STAMP)
	$(BIN)/python -m api.openapi_dump docs/openapi.json

# the service against nginx and its framework ceiling (needs nginx-light, wrk, curl and
# PostgreSQL; see README "Performance"); about 12 minutes; JSON into bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
