# Everyday commands. `make` alone prints this help.
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help install dev run run-streaming test lint types unit services-start services-stop bench chaos clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## create .venv and install the service
	bash scripts/bootstrap.sh

dev: ## create .venv and install the service with the dev tools
	bash scripts/bootstrap.sh dev

run: install ## run the embedded service on 127.0.0.1:8000 (state in ./var)
	.venv/bin/availability serve

run-streaming: ## Kafka, Redis, one worker and the API on 127.0.0.1:8000 (Ctrl-C stops all)
	bash scripts/run-streaming.sh

test: ## the whole test command: services, lint, types and every test
	bash scripts/test.sh

lint: dev ## ruff format --check and ruff check
	$(PY) -m ruff format --check . && $(PY) -m ruff check .

types: dev ## mypy --strict
	$(PY) -m mypy --strict availability api embedded service streams

unit: dev ## the fast unit tests only (no services)
	$(PY) -m pytest tests/unit -q

services-start: ## start Kafka and Redis on 127.0.0.1 (scripts/services.sh)
	bash scripts/services.sh start all

services-stop: ## stop the Kafka and Redis this project started
	bash scripts/services.sh stop all

bench: dev services-start ## every benchmark figure in one run: bench-results/report.md and plots
	$(PY) -m loadtests.report

chaos: dev ## the fault suite on a stack of its own: bench-results/chaos.md (FAULTS=1,2,6 SHORT=1)
	$(PY) -m loadtests.chaos $(if $(FAULTS),--faults $(FAULTS)) $(if $(SHORT),--short)

clean: ## remove caches (keeps .venv, ./var and .services)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
