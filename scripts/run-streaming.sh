#!/usr/bin/env bash
# The whole streaming stack on this machine: Kafka and Redis (127.0.0.1), one worker in the
# background, and the API in the foreground on 127.0.0.1:8000. Ctrl-C stops all of it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh start all
mkdir -p var
export AVAIL_DATA_DIR="${AVAIL_DATA_DIR:-./var/worker}"
.venv/bin/availability worker > var/worker.log 2>&1 &
worker=$!
cleanup() {
    kill -TERM "$worker" 2>/dev/null && wait "$worker" 2>/dev/null || true
    bash scripts/services.sh stop all || true
}
trap cleanup EXIT INT TERM
echo "run-streaming: worker pid $worker (log var/worker.log); API on http://127.0.0.1:${AVAIL_PORT:-8000}" >&2
.venv/bin/availability api "$@"
