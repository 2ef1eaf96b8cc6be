#!/usr/bin/env bash
# `make test`: ruff, the format check and strict mypy, then every test against a local Kafka +
# PostgreSQL (scripts/with-infra.sh). The short chaos run (tests/chaos/test_chaos_short.py,
# ~5 minutes on a stack of its own: its own Kafka, PostgreSQL and services, since it kills them)
# starts first and runs alongside the lint and the rest of the suite, whose tests mostly wait
# on the stack rather than use the CPU: on two cores that takes ~5 minutes off the whole run.
# Both must pass; a failing lint or suite stops the chaos run (its stack is stopped by it).
# Usage: PY=.venv/bin/python KAFKA_BROKERS=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV_BIN="$(dirname "${PY:-.venv/bin/python}")"
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
CHAOS_TEST=tests/chaos/test_chaos_short.py

mkdir -p .run
chaos_log=".run/chaos-short-$$.log"
started=$SECONDS
"$VENV_BIN/pytest" -p no:cacheprovider "$CHAOS_TEST" >"$chaos_log" 2>&1 &
chaos_pid=$!

stop_chaos() {
  # SIGTERM: the chaos tests turn it into KeyboardInterrupt, so the harness stops its stack
  if kill -0 "$chaos_pid" 2>/dev/null; then
    echo "test.sh: stopping the short chaos run (pid $chaos_pid)" >&2
    kill -TERM "$chaos_pid" 2>/dev/null || true
    wait "$chaos_pid" 2>/dev/null || true
  fi
}
trap stop_chaos EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$VENV_BIN/ruff" check .
"$VENV_BIN/ruff" format --check .
"$VENV_BIN/mypy"

markers=()
if [[ "$KAFKA_BROKERS" != 3 ]]; then
  markers=(-m "not cluster")
fi
PY="${PY:-.venv/bin/python}" KAFKA_BROKERS="$KAFKA_BROKERS" scripts/with-infra.sh \
  "$VENV_BIN/pytest" "${markers[@]}" --ignore="$CHAOS_TEST" "$@"

echo "test.sh: the suite passed; waiting for the short chaos run (pid $chaos_pid)" >&2
chaos_rc=0
wait "$chaos_pid" || chaos_rc=$?
trap - EXIT
if [[ $chaos_rc -ne 0 ]]; then
  cat "$chaos_log"
  echo "test.sh: the short chaos run failed (exit $chaos_rc); its output is above" >&2
  exit "$chaos_rc"
fi
tail -n 1 "$chaos_log"
echo "test.sh: the short chaos run passed ($((SECONDS - started)) s since the start)" >&2
rm -f "$chaos_log"
