#!/usr/bin/env bash
# The whole test command: install, start Kafka and Redis, lint, type-check, run every test,
# and stop what it started. Exit non-zero on any failure, and when pytest ran no test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

bash scripts/bootstrap.sh dev
PY=.venv/bin/python

step() { printf '\n== %s\n' "$*" >&2; }

step "lint: ruff format --check, ruff check"
"$PY" -m ruff format --check .
"$PY" -m ruff check .

step "deploy: hadolint, helm lint, helm template | validate (scripts/deploy-check.sh)"
bash scripts/deploy-check.sh

step "types: mypy --strict"
"$PY" -m mypy --strict availability api embedded service streams

step "services: Kafka and Redis on 127.0.0.1"
trap 'bash scripts/services.sh stop all || true' EXIT
bash scripts/services.sh start all

step "tests: pytest"
set +e
"$PY" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
