#!/usr/bin/env bash
# Run a command with KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL exported: the ones already in
# the environment, else a fresh local Kafka / PostgreSQL started by devstack for this run
# and always stopped at the end (success, failure or interrupt). Usage: with-infra.sh CMD...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-.venv/bin/python}"

if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && -n "${DATABASE_URL:-}" ]]; then
  exec "$@"
fi

name="test-$$"
started=""
cleanup() {
  local rc=$?
  if [[ -n "$started" ]]; then
    if [[ $rc -eq 0 ]]; then
      "$PY" -m devstack infra down --name "$name" --purge || true
    else
      "$PY" -m devstack infra down --name "$name" --purge --keep-logs || true
      echo "with-infra: exit $rc; infrastructure logs kept in .run/$name/logs/" >&2
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=1
exports="$("$PY" -m devstack infra up --name "$name")"
eval "$exports"
export KAFKA_BOOTSTRAP_SERVERS DATABASE_URL
"$@"
