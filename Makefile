# Lethe developer targets. Only Python 3.11+ and make are needed: uv is bootstrapped into .tools/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
RUN := $(VENV)/bin
SPECTRAL_VERSION := 6.16.3
SPECTRAL := .tools/spectral/node_modules/.bin/spectral

.PHONY: help demo test test-unit test-integration lint format openapi spec-tools docs-screenshot migrate bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced

$(SPECTRAL):
	@command -v npm >/dev/null || { echo "npm is needed to install the spec linter (apt-get install npm)" >&2; exit 1; }
	npm install --prefix .tools/spectral --no-audit --no-fund --loglevel=error "@stoplight/spectral-cli@$(SPECTRAL_VERSION)"

spec-tools: $(SPECTRAL)  ## install the OpenAPI linter (spectral, pinned) into .tools/

demo: $(VENV)/.synced  ## migrate the embedded store, create the demo shop, print a token, serve on :8000
	LETHE_DEMO=1 $(RUN)/lethe demo

test: $(VENV)/.synced $(SPECTRAL)  ## the whole suite (PostgreSQL/MariaDB tests need LETHE_TEST_*_URL or Docker)
	$(RUN)/pytest

test-unit: $(VENV)/.synced  ## unit tests only (no server needed)
	$(RUN)/pytest tests/unit

test-integration: $(VENV)/.synced  ## integration tests only (real databases)
	$(RUN)/pytest tests/integration

lint: $(VENV)/.synced  ## ruff + mypy (strict on app/)
	$(RUN)/ruff check app tests bench migrations
	$(RUN)/ruff format --check app tests bench migrations
	$(RUN)/mypy

format: $(VENV)/.synced
	$(RUN)/ruff format app tests bench migrations
	$(RUN)/ruff check --fix app tests bench migrations

openapi: $(VENV)/.synced  ## regenerate openapi/openapi.json from the app
	$(RUN)/python -m app.openapi openapi/openapi.json

docs-screenshot: $(VENV)/.synced  ## headless-Chromium screenshot of the docs page, offline, to .lethe/docs.png
	$(RUN)/python -m tests.integration.contract.screenshot .lethe/docs.png

migrate: $(VENV)/.synced  ## upgrade the service store to the newest migration
	$(RUN)/lethe database upgrade --no-prompt

bench: $(VENV)/.synced  ## run the benchmarks and write bench/RESULTS.md
	$(RUN)/python -m bench

clean:
	rm -rf .venv .tools .lethe .pytest_cache .mypy_cache .ruff_cache
