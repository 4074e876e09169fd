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

# everything, with the time it took
test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint typecheck && $(BIN)/pytest && \
	$(MAKE) --no-print-directory e2e-uvicorn; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s"; exit $$status

# the service must keep working under uvicorn too: the real-server tests of HTTP once
# more on it (storage, crashes and metadata do not depend on the HTTP server)
UVICORN_SKIPS := crash concurrency disk_full persistence schemathesis tenant_isolation \
	idempotent_retries path_escape
e2e-uvicorn: $(STAMP)
	CHAT_STORAGE_SERVER=uvicorn $(BIN)/pytest test/e2e -m 'not postgres' \
		$(foreach name,$(UVICORN_SKIPS),--ignore=test/e2e/test_$(name).py)

# the committed OpenAPI document; test/api/test_openapi.py fails while it is stale
openapi: $(STAMP)
	$(BIN)/python -m api.openapi_dump docs/openapi.json

# the service against nginx and its framework ceiling (needs nginx-light, wrk, curl and
# PostgreSQL; see README "Performance"); about 12 minutes; JSON into bench/results/
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
