# The two commands: `make up` (whole stack, local processes) and `make test` (everything CI
# runs). No Docker engine needed: devstack runs real Kafka and PostgreSQL 15 as processes.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Stack name: its processes, data and logs live in .run/$(NAME)/.
NAME ?= dev
# devstack needs only the standard library: down/logs/status work without the venv.
DEVSTACK := PYTHONPATH=libs/devstack/src $(PYTHON) -m devstack

# Installed editable, in this order, each once its pyproject.toml exists (and the local
# packages it depends on do too: see scripts/local_packages.py).
LOCAL_PACKAGES := libs/contracts libs/servicekit libs/devstack[test] services/pos-gateway \
	services/credit services/loyalty services/reporting services/notifier services/backoffice
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

.PHONY: help bootstrap venv up down logs env status test lint typecheck unit kafka-fetch clean \
	rebuild-reports snapshot-reports dead-letters redrive openapi bench bench-reports bench-backoffice \
	bench-shape bench-deps chaos fuzz capacity capacity-measure FORCE

help:
	@echo "make up         start Kafka, PostgreSQL and the five services (.run/$(NAME)/)"
	@echo "make test       lint, type-check, then every test against a fresh local Kafka + PostgreSQL"
	@echo "make down       stop what 'make up' started"
	@echo "make logs       print the log files of the stack"
	@echo "make env        export GW and OPERATOR_TOKEN: eval \"\$$(make -s env)\""
	@echo "make rebuild-reports  rebuild reporting's read models from the newest snapshot + the log"
	@echo "make snapshot-reports  snapshot reporting's read models now (with their offsets)"
	@echo "make dead-letters [CONSUMER=credit] [SINCE=2h]  list deadletter.v1 of the stack"
	@echo "make redrive OFFSETS='3:17 0:5'  re-publish those dead letters after a fix"
	@echo "make status     what runs, with its addresses"
	@echo "make chaos      fault harness: 8 scenarios (7 faults, hostile input), >= 20,000 operations"
	@echo "make chaos CHAOS_ARGS='--brokers 3'  broker kill -9 and rolling restart on 3 brokers"
	@echo "make openapi    rewrite docs/openapi.json from the gateway's code (commit it with the change)"
	@echo "make fuzz       stateful fuzzing of the gateway's OpenAPI, long run (FUZZ_SECONDS=900)"
	@echo "make bench      open-loop load steps on a stack of its own -> docs/benchmarks.md"
	@echo "make bench-reports  Payment-Balance on 100,000 customers / 1,000,000 sales"
	@echo "make bench-backoffice  every back-office page on 100,000 customers (300 ms budget)"
	@echo "make bench-shape  the shape's floor: a sale's hops with nothing but the messaging"
	@echo "make capacity-measure  bytes/rows/commits/messages per request on a stack of its own"
	@echo "make capacity   recompute docs/capacity.md's tables from docs/capacity/inputs.json"
	@echo "make lint | typecheck | unit (tests that need no infrastructure) | venv | bootstrap"

bootstrap:
	@scripts/bootstrap.sh

venv: bootstrap $(STAMP)

# Rewritten only when the list changes, so a package that gains its pyproject.toml triggers
# a re-install and nothing else does.
$(VENV)/.local-packages: FORCE
	@mkdir -p $(VENV)
	@list="$$($(PYTHON) scripts/local_packages.py $(LOCAL_PACKAGES))"; \
	if [[ "$$list" != "$$(cat $@ 2>/dev/null)" ]]; then printf '%s\n' "$$list" > $@; fi

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS) $(VENV)/.local-packages
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		-r requirements-dev.txt $$(sed 's/^/-e /' $(VENV)/.local-packages)
	@touch $@

up: venv
	$(PY) -m devstack up --name $(NAME)

down:
	$(DEVSTACK) down --name $(NAME)

logs:
	$(DEVSTACK) logs --name $(NAME)

# `eval "$(make -s env)"`: GW and OPERATOR_TOKEN of the running stack, for the README's curl
env:
	@$(DEVSTACK) env --name $(NAME)

status:
	$(DEVSTACK) status --name $(NAME)

# Rebuild reporting's read models from the newest snapshot and the log since (stack from
# `make up`); refused, changing nothing, when retention dropped what no snapshot covers.
STACK_ENV = eval "$$($(PY) -m devstack --name $(NAME) status --json | $(PY) -c 'import json, shlex, sys; \
		state = json.load(sys.stdin)["state"]; \
		print(" ".join(f"export {k}={shlex.quote(state[k])}" for k in \
		("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")))')"
rebuild-reports: venv
	$(STACK_ENV); $(PY) -m reporting.rebuild --verify

# Take a snapshot of reporting's read models now (the service takes one a day by itself).
snapshot-reports: venv
	$(STACK_ENV); $(PY) -m reporting.snapshot

# Dead letters of the stack from `make up` (KAFKA_BOOTSTRAP_SERVERS, when set, wins).
STACK_KAFKA = $${KAFKA_BOOTSTRAP_SERVERS:-$$($(PY) -m devstack --name $(NAME) status --json | \
	$(PY) -c 'import json, sys; print(json.load(sys.stdin)["state"]["KAFKA_BOOTSTRAP_SERVERS"])')}

dead-letters: venv
	$(PY) -m servicekit.deadletters --bootstrap-servers "$(STACK_KAFKA)" list \
		$(if $(CONSUMER),--consumer $(CONSUMER)) $(if $(SINCE),--since $(SINCE))

redrive: venv
	@test -n "$(OFFSETS)" || { echo "usage: make redrive OFFSETS='<partition:offset> ...'"; exit 2; }
	$(PY) -m servicekit.deadletters --bootstrap-servers "$(STACK_KAFKA)" redrive \
		$(foreach o,$(OFFSETS),--offset $(o))

# Benchmarks, never part of `make test`: each starts infrastructure of its own (stopped by PID
# when done) and writes JSON to docs/benchmarks/, rendered into docs/benchmarks.md with a plot.
BENCH_ARGS ?=
bench-deps: venv
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements-bench.txt

bench: bench-deps
	PYTHONPATH=tools $(PY) -m bench pipeline $(BENCH_ARGS)

bench-reports: bench-deps
	PYTHONPATH=tools $(PY) -m bench reports $(BENCH_ARGS)

bench-backoffice: bench-deps
	PYTHONPATH=tools $(PY) -m bench backoffice $(BENCH_ARGS)

bench-shape: bench-deps
	PYTHONPATH=tools $(PY) -m bench.shape run $(BENCH_ARGS)

# Capacity plan (docs/capacity.md): `capacity-measure` runs the benchmark's mix on a stack of
# its own (bounded: CAPACITY_ARGS='--rate R --seconds S') and writes bytes, rows, commits and
# messages per request to docs/capacity/measured-<label>.json; `capacity` recomputes the
# plan's tables from docs/capacity/inputs.json (a test fails when the document is stale).
CAPACITY_ARGS ?=
capacity-measure: bench-deps
	PYTHONPATH=tools:. $(PY) -m tools.capacity measure $(CAPACITY_ARGS)

capacity: venv
	$(PY) -m tools.capacity plan

kafka-fetch: bootstrap
	$(DEVSTACK) kafka-fetch

# Fault harness (tools/chaos/README.md): its own Kafka + PostgreSQL + services, 8 scenarios,
# >= 20,000 operations; exit 1 on any invariant violation. `make test` runs the short form.
# CHAOS_ARGS='--brokers 3' (or KAFKA_BROKERS=3): the cluster scenarios on three brokers.
CHAOS_ARGS ?=
chaos: venv
	$(PY) -m tools.chaos $(CHAOS_ARGS)

# Stateful fuzzing of the gateway's OpenAPI (tests/e2e/test_fuzz_stateful.py) on a stack of
# its own: the long profile; `make test` runs the short one. Statistics: .run/fuzz-stats.json.
fuzz: venv
	@mkdir -p .run
	FUZZ_PROFILE=long FUZZ_STATS_FILE=.run/fuzz-stats.json PY=$(PY) scripts/with-infra.sh \
		$(VENV)/bin/pytest -s tests/e2e/test_fuzz_stateful.py

# docs/openapi.json: the gateway's public contract as the code serves it; a unit test fails
# while the committed file differs (services/pos-gateway/tests/unit/test_openapi_snapshot.py)
openapi: venv
	$(PY) -m pos_gateway.openapi

# ruff and mypy read the root pyproject.toml only (tests/suite/test_lint_configuration.py)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -m "not integration and not e2e"

# Infrastructure: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else a fresh local Kafka
# and PostgreSQL that scripts/with-infra.sh always stops (trap), also when tests fail.
# KAFKA_BROKERS=3: every test runs on a three-broker cluster, plus the tests marked `cluster`
# (they start a cluster of their own to kill a broker; left out on one broker for time).
KAFKA_BROKERS ?= 1
# The short chaos run (a stack of its own) runs alongside the lint and the suite: scripts/test.sh.
test: venv
	PY=$(PY) KAFKA_BROKERS=$(KAFKA_BROKERS) scripts/test.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
