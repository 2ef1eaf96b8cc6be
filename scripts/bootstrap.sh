#!/usr/bin/env bash
# Install what `make up` / `make test` need that the machine lacks, from Debian's packages:
# Python 3.11 (with venv), Java 17+, Maven, the PostgreSQL 15 server binaries, curl, jq, Chromium
# (the back office's browser tests drive it with Playwright, which never downloads a browser of its
# own), and a `postgres` user to run the server as when we are root. When everything is there this is a
# no-op of a few checks.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PYTHON="${PYTHON:-python3.11}"
packages=()

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  packages+=(python3.11 python3.11-venv)
elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3.11-venv)
fi

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}
if ! command -v java >/dev/null 2>&1 || [[ "$(java_major)" -lt 17 ]]; then
  packages+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || packages+=(maven)
if [[ ! -x "$PG_BIN/postgres" || ! -x "$PG_BIN/initdb" ]]; then
  packages+=(postgresql-15)
fi
# the README's quickstart (and its test) talks to the gateway with curl and reads JSON with jq
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v jq >/dev/null 2>&1 || packages+=(jq)
# promtool checks the alert rules and the Prometheus configs in the deploy tests
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# the back office's browser tests (tests/browser) launch /usr/bin/chromium headless
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || packages+=(chromium)

if ((${#packages[@]} > 0)); then
  echo "bootstrap: installing ${packages[*]}" >&2
  sudo=()
  if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "bootstrap: missing ${packages[*]} and not root: install them, then re-run" >&2
      exit 1
    fi
  fi
  if [[ " ${packages[*]} " == *" postgresql-15 "* ]]; then
    # devstack runs its own server in its run dir: no distribution cluster to create or start.
    "${sudo[@]}" mkdir -p /etc/postgresql-common
    if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
      echo 'create_main_cluster = false' |
        "${sudo[@]}" tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# PostgreSQL refuses to run as root: devstack runs it as `postgres` then.
if [[ $EUID -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
  echo "bootstrap: creating the system user postgres" >&2
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

if [[ "$(java_major)" -lt 17 ]]; then
  echo "bootstrap: java on PATH is $(java_major); Kafka 4 needs 17+ (set JAVA_HOME)" >&2
  exit 1
fi
