"""The pipeline benchmark: its own stack, the machine's ceiling, then open-loop steps.

The stack (Kafka, PostgreSQL, the five services) is started by devstack in `.run/<name>/` and
stopped by PID in a `finally`, whatever happens. Between steps the pipeline is allowed to drain
(consumer lag back to 0) so each step starts clean; stepping stops after the first step that
does not keep up.

After each step has drained, every operation sent so far has its final answer (re-sent like a
POS does after a `202`) and the fault harness's invariant checker (`tools.chaos.invariants`)
compares the load generator's model with balances, statements and reports: a step "held the
invariants" when it found no violation. After the steps, a recovery phase kills -9 one consumer
service under a steady rate and restarts it (`bench.recovery`); the invariants are checked once
more after it.

Before each step every database of the stack is analysed (`analyze_databases`, outside the
measured window). The bench's tables grow from empty within minutes, and a statement's cached
plan is made on the statistics of the moment: an outbox or a ledger planned at a few pages is
scanned whole for every row it looks up until autovacuum analyses it again (about once a
minute per database, later when its workers are busy), where a database that has run for a
while has statistics that say what its tables hold (docs/benchmarks/notes.md, "Stop 31").

Each step also says where its till operations spent their time between the services, hop by
hop, from the timestamps of their transactions in the gateway's, credit's and loyalty's
databases (`bench.hops`), and which hop its slowest 5% spent it in. With `pg_statements`
PostgreSQL runs with `pg_stat_statements`, and each step says which service's statements, and
which statements, PostgreSQL spent its time on (`bench.pgstatements`).

Every run also measures the floor (`bench.floor`: a minimal FastAPI + asyncpg app at
saturation, minutes before the steps, on the same machine) and gives each step's CPU per
request for the stack and per service (instances of one service summed), so a report reads as
"the stack spends N times the floor per request". Options: `instances` runs every consumer
service as that many processes (devstack's extra instances, as the chaos harness's
`many-instances` does); `profile` runs one more step at the best rate with py-spy on every
service and writes flame graphs to `docs/benchmarks/`; `ab_refs` runs each rate once per code
variant (the code at each ref, then this checkout), restarting the services between them, so
a change is compared with the code before it within one run, interleaved.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx

from bench import floor, hops, pgstatements, procstat, recovery
from bench.ceiling import kafka_producer, pgbench
from bench.loadgen import LoadGenerator, StepStats, percentile, run_on_uvloop
from bench.profiles import Profile, flamegraph_svg
from contracts import topics
from devstack.paths import repo_root
from devstack.ports import free_port
from devstack.procs import no_progress
from devstack.services import SERVICE_NAMES, SERVICES, ServicePorts
from devstack.stack import Stack, purge_run_dir, start_stack
from servicekit.settings import with_database
from tools.chaos import invariants
from tools.chaos.driver import CustomerModel

OK_STATUSES = {200, 201, 202}
LOADGEN = "load generator"
ALONE = frozenset({LOADGEN})


@dataclass
class Options:
    name: str
    rates: list[float]
    step_seconds: float
    label: str
    out_dir: Path
    chains: int = 4
    stores: int = 3
    customers: int = 100
    probes: int = 12
    warmup_seconds: float = 10.0
    warmup_rate: float = 20.0
    skip_ceiling: bool = False
    service_env: dict[str, str] | None = None
    #: gateway processes (extra ones are devstack instances on free ports; the load goes
    #: round-robin over them, their consumers share the `gateway` group)
    gateways: int = 1
    check_invariants: bool = True
    #: kill -9 this consumer service under a steady rate after the steps ("" to skip)
    recovery_service: str = "credit"
    #: that steady rate (default: half the highest rate that kept up with all invariants)
    recovery_rate: float | None = None
    recovery_before_seconds: float = 15.0
    recovery_after_seconds: float = 75.0
    #: the command line as given (for the report)
    command: str = ""
    #: processes per consumer service (credit, loyalty, reporting, notifier); the gateway
    #: has `gateways`
    instances: int = 1
    skip_floor: bool = False
    #: after the steps, one more step with py-spy on every service -> flame graphs
    profile: bool = False
    #: that step's rate (default: the best rate)
    profile_rate: float | None = None
    #: A/B: each rate once per variant, the code at each of these refs first, this checkout
    #: last (services restarted between variants)
    ab_refs: list[str] = field(default_factory=list)
    #: A/B: each rate once with the services reaching PostgreSQL over TCP on loopback, then
    #: through the unix socket the stack's URL names (this checkout's code both times)
    ab_database_tcp: bool = False
    #: PostgreSQL started with `pg_stat_statements`: each step reports its time per database
    #: and its costliest statements (`bench.pgstatements`)
    pg_statements: bool = False
    #: first the whole run on the code at this ref (`code_ref`, a stack of its own), then on
    #: this checkout, in one invocation: the A/B for a ref whose schema cannot share a stack
    baseline_ref: str | None = None
    #: run everything on the code at this ref (its migrations on fresh databases)
    code_ref: str | None = None
    #: where the flame graphs go (the pipeline's JSON goes to `out_dir`)
    svg_dir: Path | None = None


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> {name: [(labels, value)]} (enough for our own metrics)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: dict[str, str] = {}
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                k, _, v = part.partition("=")
                labels[k.strip(",")] = v.strip('"')
        try:
            out[name].append((labels, float(value)))
        except ValueError:
            continue
    return out


class Scraper:
    """Reads /metrics of every service: consumer lag per consumer, messages published, records
    per consumer batch."""

    def __init__(self, stack: Stack) -> None:
        self.urls = {n: stack.url(n) + "/metrics" for n in SERVICE_NAMES}
        for instance, port in stack.services.instance_ports.items():
            self.urls.setdefault(instance, f"http://127.0.0.1:{port}/metrics")
        self.client = httpx.AsyncClient(timeout=5.0)

    async def scrape(self) -> dict[str, dict[str, list[tuple[dict[str, str], float]]]]:
        async def one(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
            try:
                return parse_metrics((await self.client.get(url)).text)
            except httpx.HTTPError:
                return {}

        names = list(self.urls)
        results = await asyncio.gather(*(one(self.urls[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def consumer_lag(self) -> dict[str, float]:
        lag: dict[str, float] = defaultdict(float)
        for service, metrics in (await self.scrape()).items():
            for labels, value in metrics.get("consumer_lag_messages", []):
                lag[f"{service}/{labels.get('consumer', '?')}"] += value
        return dict(lag)

    async def totals(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """`totals_of` one scrape of every service."""
        return totals_of(await self.scrape())

    async def close(self) -> None:
        await self.client.aclose()


def totals_of(
    scraped: dict[str, dict[str, list[tuple[dict[str, str], float]]]],
) -> tuple[float, dict[str, tuple[float, float]]]:
    """The messages the services' outboxes published, and per service and consumer the sum and
    count of `consumer_batch_messages`, from one scrape (`Scraper.scrape`)."""
    published = 0.0
    batches: dict[str, tuple[float, float]] = {}
    for service, metrics in scraped.items():
        published += sum(v for _, v in metrics.get("outbox_published_total", []))
        sums = {lb.get("consumer"): v for lb, v in metrics.get("consumer_batch_messages_sum", [])}
        for labels, count in metrics.get("consumer_batch_messages_count", []):
            consumer = labels.get("consumer")
            batches[f"{service}/{consumer}"] = (sums.get(consumer, 0.0), count)
    return published, batches


def batch_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Records per batch of each consumer over a step (`Scraper.totals` before and after
    it), for the consumers that processed a batch in it; instances of a service summed."""
    totals: dict[str, list[float]] = {}
    for key, (total, count) in after.items():
        total0, count0 = before.get(key, (0.0, 0.0))
        if count - count0 <= 0:
            continue
        service, _, consumer = key.partition("/")
        name = f"{service_of(service) or service}/{consumer}"
        acc = totals.setdefault(name, [0.0, 0.0])
        acc[0] += total - total0
        acc[1] += count - count0
    return {name: round(t / c, 2) for name, (t, c) in sorted(totals.items())}


async def _server_value(database_url: str, query: str) -> Any:
    """The one value `query` reads, on a connection of its own to `database_url`."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def pg_now(database_url: str) -> datetime:
    """The server's clock (`now()`), which `bench.hops` reads the step's window by."""
    now: datetime = await _server_value(database_url, "SELECT now()")
    return now


async def pg_rollbacks(database_url: str) -> float:
    """Transactions ended by ROLLBACK, server-wide (a connection pre-ping is one per checkout;
    read-only sessions that end without COMMIT count here too)."""
    return float(
        await _server_value(database_url, "SELECT sum(xact_rollback) FROM pg_stat_database")
    )


async def pg_deadlocks(database_url: str) -> float:
    """Deadlocks PostgreSQL detected, server-wide (each one a transaction rolled back and
    retried: consumers of one service on several instances lock rows in different orders)."""
    return float(await _server_value(database_url, "SELECT sum(deadlocks) FROM pg_stat_database"))


async def analyze_databases(database_url: str, names: list[str] | None = None) -> float:
    """`ANALYZE` in each database `names` (every one the server allows connections to but
    `postgres` and the templates, when None) of the server of `database_url`; the seconds it
    took. Each statement cached on the services' connections is planned again at its next use,
    with the statistics of what the tables hold now."""
    started = time.perf_counter()
    if names is None:
        conn = await asyncpg.connect(database_url)
        try:
            names = [
                row[0]
                for row in await conn.fetch(
                    "SELECT datname FROM pg_database"
                    " WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres'"
                    " ORDER BY datname"
                )
            ]
        finally:
            await conn.close()
    for name in names:
        conn = await asyncpg.connect(with_database(database_url, name))
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    return time.perf_counter() - started


async def pg_commits(database_url: str) -> float:
    return float(await _server_value(database_url, "SELECT sum(xact_commit) FROM pg_stat_database"))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def summarize(stats: StepStats, rate: float, duration: float, t0: float) -> dict[str, Any]:
    recs = stats.records
    ok = [r for r in recs if r.status in OK_STATUSES]
    refused = [r for r in recs if r.status in (409, 422) and r.code]
    errors = [r for r in recs if r not in ok and r not in refused]
    error_kinds: dict[str, int] = defaultdict(int)
    for r in errors:
        error_kinds[f"{r.status or r.code}"] += 1
    lat = [r.latency for r in recs]
    elapsed = max(duration, stats.last_done - t0) if recs else duration
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted({r.kind for r in recs}):
        ks = [r.latency for r in recs if r.kind == kind]
        by_kind[kind] = {
            "n": len(ks),
            "p50_ms": _ms(percentile(ks, 50)),
            "p99_ms": _ms(percentile(ks, 99)),
        }
    sales = [r for r in recs if r.kind.startswith("sale")]
    return {
        "offered_rps": rate,
        "sent": len(recs),
        "achieved_rps": round((len(ok) + len(refused)) / elapsed, 1),
        "sales_per_second": round(sum(1 for r in sales if r.status in OK_STATUSES) / elapsed, 1),
        "ok": len(ok),
        "accepted_202": sum(1 for r in recs if r.status == 202),
        "refused": len(refused),
        "errors": len(errors),
        "error_kinds": dict(error_kinds),
        "latency_ms": {
            "p50": _ms(percentile(lat, 50)),
            "p95": _ms(percentile(lat, 95)),
            "p99": _ms(percentile(lat, 99)),
            "p99.9": _ms(percentile(lat, 99.9)),
            "max": _ms(max(lat) if lat else None),
        },
        "send_lag_p99_ms": _ms(percentile([r.send_lag for r in recs], 99)),
        "by_kind": by_kind,
        "read_model_lag_ms": {
            "n": len(stats.read_lags),
            "p50": _ms(percentile(stats.read_lags, 50)),
            "p99": _ms(percentile(stats.read_lags, 99)),
            "max": _ms(max(stats.read_lags) if stats.read_lags else None),
            "from_send_p50": _ms(percentile(stats.read_lags_from_send, 50)),
            "from_send_p99": _ms(percentile(stats.read_lags_from_send, 99)),
            "unresolved": stats.unresolved_probes,
        },
        "probe_reads_per_second": round(stats.probe_reads / elapsed, 1),
    }


def kept_up(step: dict[str, Any]) -> bool:
    """Achieved >= 95% of offered, errors <= 1%, p99 under the 2 s sale wait, lag p99 <= 5 s,
    and the consumers drained within the drain timeout."""
    lat99 = step["latency_ms"]["p99"] or 0
    lag99 = step["read_model_lag_ms"]["p99"] or 0
    return (
        step["achieved_rps"] >= 0.95 * step["offered_rps"]
        and step["errors"] <= 0.01 * max(1, step["sent"])
        and lat99 <= 2000
        and lag99 <= 5000
        and step["read_model_lag_ms"]["unresolved"] == 0
        and step.get("drained_seconds") is not None
    )


def _roots(stack: Stack) -> dict[str, int]:
    roots = {name: proc.pid for name, proc in stack.services.processes.items()}
    if stack.infra.kafka is not None:  # every broker of a cluster (KAFKA_BROKERS=3)
        nodes = stack.infra.kafka.nodes
        for node in nodes:
            roots["kafka" if len(nodes) == 1 else f"kafka-{node.node_id}"] = node.pid
    if stack.infra.postgres is not None:
        roots["postgres"] = stack.infra.postgres.pid
    roots[LOADGEN] = os.getpid()
    return roots


def _start_gateways(stack: Stack, count: int) -> list[str]:
    """Extra gateway processes (gateway-2, ...) on free ports; returns their URLs."""
    urls = []
    for n in range(2, count + 1):
        port = free_port()
        stack.services.start_instance(
            "gateway", instance=f"gateway-{n}", port=port, progress=no_progress
        )
        urls.append(f"http://127.0.0.1:{port}")
    return urls


async def _wait_drained(scraper: Scraper, limit_seconds: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < limit_seconds:
        lag = await scraper.consumer_lag()
        if sum(lag.values()) == 0:
            return round(time.perf_counter() - started, 1)
        await asyncio.sleep(0.5)
    return None


async def check_model(
    gen: LoadGenerator,
    gateway_url: str,
    *,
    credit_url: str | None = None,
    settle_seconds: float = 120.0,
    within: float = 60.0,
) -> dict[str, Any]:
    """Let every operation get its final answer, then run the fault harness's invariant
    checker over the load generator's model (all customers, all steps so far)."""
    unresolved = await gen.settle(settle_seconds)
    violations, seconds = await invariants.check_until_held(
        gateway_url, gen.models(), within=within
    )
    stats = gen.model_stats()
    dump = await _dump_violations(gen, violations, gateway_url, credit_url) if violations else None
    return {
        "held": not violations,
        "model_dump": dump,
        "violations": len(violations),
        "examples": violations[:5],
        "check_seconds": round(seconds, 1),
        "unresolved_after_settle": unresolved,
        "customers": stats.customers,
        "operations": stats.operations,
        "accepted": stats.accepted,
        "refused": stats.refused,
        "unanswered": stats.unanswered,
        "resends": stats.resends,
    }


async def _views_of(
    customer: CustomerModel, gateway_url: str, credit_url: str | None
) -> dict[str, Any]:
    """What the system shows of one customer: reporting's customer and statement (through
    the gateway) and credit's own ledger figures (its internal API), to tell which side
    differs from the model."""
    key = {"Authorization": f"Bearer {customer.chain.admin_key}"}
    views: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=30.0) as http:
        base = gateway_url.rstrip("/")
        for name, url in (
            ("reporting_customer", f"{base}/v1/customers/{customer.customer_id}"),
            ("statement", f"{base}/v1/customers/{customer.customer_id}/statement"),
            ("card_lookup", f"{base}/v1/cards/{customer.card}"),
        ):
            try:
                views[name] = (await http.get(url, headers=key)).json()
            except (httpx.HTTPError, ValueError) as exc:
                views[name] = repr(exc)
        if credit_url:
            path = (
                f"/internal/v1/chains/{customer.chain.chain_id}/customers/"
                f"{customer.customer_id}/credit"
            )
            try:
                views["credit"] = (await http.get(credit_url.rstrip("/") + path)).json()
            except (httpx.HTTPError, ValueError) as exc:
                views["credit"] = repr(exc)
    return views


async def _dump_violations(
    gen: LoadGenerator, violations: list[str], gateway_url: str, credit_url: str | None
) -> str | None:
    """The model of every customer a violation names (its operations, requests and final
    answers) and what the system shows of it (`_views_of`) in .run/bench-violations/, for
    the post-mortem; returns the file's name."""
    named = [c for c in gen.models() if any(c.customer_id in v for v in violations)]
    if not named:
        return None
    views = {c.customer_id: await _views_of(c, gateway_url, credit_url) for c in named}
    folder = repo_root() / ".run" / "bench-violations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"violations-{int(time.time())}.json"
    data = {
        "violations": violations,
        "customers": [
            {
                "customer_id": c.customer_id,
                "is_probe": any(c in chain.probes for chain in gen.chains),
                "system": views[c.customer_id],
                "ops": [
                    {
                        "kind": op.kind,
                        "path": op.path,
                        "body": op.body,
                        "key": op.key,
                        "status": op.status,
                        "answer": op.answer,
                        "attempts": op.attempts,
                        "sent_at": op.sent_at,
                        "answered_at": op.answered_at,
                        "folded": op.folded,
                    }
                    for op in c.ops
                ],
            }
            for c in named
        ],
    }
    path.write_text(json.dumps(data, indent=1, default=str))
    return path.name


def best_rate(steps: list[dict[str, Any]]) -> float | None:
    """The highest offered rate that kept up AND held every invariant (None: no step did).
    Steps are cumulative: a step counts only if every step before it held the invariants."""
    best = None
    for step in steps:
        inv = step.get("invariants")
        if inv is not None and not inv["held"]:
            break
        if step["kept_up"]:
            best = step["offered_rps"]
    return best


def service_of(process: str) -> str | None:
    """The service a process of the stack belongs to ("credit-3" -> "credit"); None for
    Kafka, PostgreSQL and the load generator."""
    if process in SERVICE_NAMES:
        return process
    base, _, n = process.rpartition("-")
    return base if base in SERVICE_NAMES and n.isdigit() else None


def cpu_ms_per_request(
    processes: dict[str, dict[str, float]], wall: float, answered: int
) -> dict[str, float]:
    """CPU ms per answered request of each service (its instances summed), Kafka and
    PostgreSQL; the load generator and the machine's other processes are left out."""
    groups: dict[str, float] = defaultdict(float)
    for name, figures in processes.items():
        if name == LOADGEN or name.startswith("("):
            continue
        groups[service_of(name) or name] += figures["cpu_percent"]
    if not answered:
        return {}
    return {g: round(pct / 100 * wall * 1000 / answered, 2) for g, pct in groups.items()}


def _start_profilers(
    pids: dict[str, int], seconds: float, out: Path
) -> list[subprocess.Popen[bytes]]:
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        procs.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--nonblocking",
                    "-p",
                    str(pid),
                    "-d",
                    str(int(seconds)),
                    "-f",
                    "raw",
                    "-o",
                    str(out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


async def _start_consumer_instances(stack: Stack, count: int) -> None:
    """Every consumer service as `count` processes: `<service>-2` ... on free ports, started
    at once (they join the service's consumer groups and database, as the chaos harness's
    `many-instances` scenario does)."""
    starts = [
        asyncio.to_thread(
            stack.services.start_instance,
            service,
            instance=f"{service}-{n}",
            port=free_port(),
            ready_timeout=240.0,
            progress=no_progress,
        )
        for n in range(2, count + 1)
        for service in SERVICE_NAMES
        if service != "gateway"
    ]
    await asyncio.gather(*starts)


@dataclass
class Variant:
    """One variant of an A/B run: the code at `ref` (exported to `pythonpath`), or this
    checkout (`pythonpath` None); `env` is what else the services are started with."""

    name: str
    pythonpath: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _export(ref: str, into: Path) -> str:
    """The services' and libraries' code at `ref` in a folder (`git archive`: no worktree);
    returns the PYTHONPATH that makes the services import it instead of this checkout."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "libs", "services"],
        cwd=repo_root(),
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    paths = sorted(str(p) for p in into.glob("libs/*/src")) + sorted(
        str(p) for p in into.glob("services/*/src")
    )
    return os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])


def services_at(exported: Path) -> tuple[str, ...]:
    """The services whose code an `_export` holds: a ref older than a service (e91bebd has no
    back office) runs without it, since this checkout's copy would import the ref's libraries."""
    return tuple(s.name for s in SERVICES if any(exported.glob(f"services/*/src/{s.module}")))


def _short_sha(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def over_tcp(url: str) -> str:
    """The server URL without its unix socket (`?host=<directory>`): the TCP address in it."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "host"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _variants(stack: Stack, refs: list[str], *, database_tcp: bool = False) -> list[Variant]:
    """This checkout last; before it each ref's code, or (`database_tcp` alone) this checkout
    over TCP. With both, the refs' code runs over TCP (a before/after of code and transport)."""
    tcp = {"DATABASE_URL": over_tcp(stack.database_url)} if database_tcp else {}
    if database_tcp and not refs:
        return [Variant("PostgreSQL over TCP", env=tcp), Variant("PostgreSQL over its socket")]
    if not refs:
        return [Variant("")]
    out = []
    for ref in refs:
        sha = _short_sha(ref)
        folder = stack.run_dir / "ab" / sha
        name = (f"{ref} ({sha})" if ref != sha else sha) + (", over TCP" if tcp else "")
        out.append(Variant(name, _export(ref, folder), env=tcp))
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "libs", "services"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    out.append(Variant(f"this checkout ({head}{' + changes' if dirty else ''})"))
    return out


async def _switch(stack: Stack, variant: Variant) -> None:
    """Every service process stopped (gracefully: its batch commits, it leaves its groups) and
    started again on its port with the variant's code."""
    names = list(stack.services.processes)
    await asyncio.gather(
        *(asyncio.to_thread(stack.services.processes[n].stop, timeout=40.0) for n in names)
    )
    env = {"PYTHONPATH": variant.pythonpath} if variant.pythonpath else {}
    env.update(variant.env)
    for n in names:
        svc = service_of(n)
        assert svc is not None
        stack.services.spawn_instance(
            svc, instance=n, port=stack.services.instance_ports[n], extra_env=env
        )
    await asyncio.gather(
        *(
            asyncio.to_thread(stack.services.wait_ready, n, timeout=240.0, progress=no_progress)
            for n in names
        )
    )


async def _measure_step(
    stack: Stack,
    gen: LoadGenerator,
    scraper: Scraper,
    opts: Options,
    rate: float,
    *,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """One open-loop step at `rate`: latency, lag, CPU per process and per request, PostgreSQL
    commits, Kafka messages; then drained and (if asked) the invariants checked."""
    roots = _roots(stack)
    before = procstat.sample(roots, alone=ALONE)
    commits0 = await pg_commits(stack.database_url)
    rollbacks0 = await pg_rollbacks(stack.database_url)
    deadlocks0 = await pg_deadlocks(stack.database_url)
    published0, batches0 = await scraper.totals()
    profilers = (
        _start_profilers(
            {n: p.pid for n, p in stack.services.processes.items() if n in SERVICE_NAMES},
            opts.step_seconds,
            profile_to,
        )
        if profile_to is not None
        else []
    )
    max_lag: dict[str, float] = defaultdict(float)
    stop = asyncio.Event()

    async def sample_lag() -> None:
        while not stop.is_set():
            for consumer, value in (await scraper.consumer_lag()).items():
                max_lag[consumer] = max(max_lag[consumer], value)
            await asyncio.sleep(2.0)

    sampler = asyncio.create_task(sample_lag())
    db0 = await pg_now(stack.database_url)
    if opts.pg_statements:
        await pgstatements.reset(_superuser_url(stack))
    wall0 = time.perf_counter()
    stats, t0, _ = await gen.run_step(rate, opts.step_seconds)
    wall = time.perf_counter() - wall0
    after = procstat.sample(roots, alone=ALONE)
    statements = await pgstatements.read(_superuser_url(stack)) if opts.pg_statements else None
    stop.set()
    await sampler
    for p in profilers:
        await asyncio.to_thread(p.wait, 120)
    end_lag = await scraper.consumer_lag()
    commits1 = await pg_commits(stack.database_url)
    rollbacks1 = await pg_rollbacks(stack.database_url)
    deadlocks1 = await pg_deadlocks(stack.database_url)
    published1, batches1 = await scraper.totals()
    step = summarize(stats, rate, opts.step_seconds, t0)
    step["pg_deadlocks"] = int(deadlocks1 - deadlocks0)
    step["consumer_lag_max"] = {k: v for k, v in sorted(max_lag.items()) if v}
    step["consumer_lag_max_total"] = sum(max_lag.values())
    step["consumer_lag_end_total"] = sum(end_lag.values())
    step["processes"] = procstat.usage(before, after, wall)
    step["drained_seconds"] = await _wait_drained(scraper, 60)
    try:
        step["hops"] = await hops.measure(stack.database_url, db0, await pg_now(stack.database_url))
    except asyncpg.PostgresError as exc:  # an older ref's tables (--code-ref, --ab-ref)
        step["hops"] = {"error": f"{type(exc).__name__}: {exc}"}
    sales = max(1, int(step["sales_per_second"] * max(opts.step_seconds, 1)))
    step["pg_commits_per_second"] = round((commits1 - commits0) / wall, 1)
    step["pg_commits_per_sale"] = round((commits1 - commits0) / sales, 1)
    answered = step["ok"] + step["refused"]
    step["pg_rollbacks_per_request"] = round((rollbacks1 - rollbacks0) / max(1, answered), 2)
    step["kafka_messages_per_second"] = round((published1 - published0) / wall, 1)
    step["batch_messages_mean"] = batch_means(batches0, batches1)
    if statements is not None:
        step["pg_statements"] = pgstatements.summarize(statements, sales)
    per_request = cpu_ms_per_request(step["processes"], wall, answered)
    step["cpu_ms_per_request"] = per_request
    # CPU the stack spent per answered request: the figure that survives a noisy machine
    step["stack_cpu_ms_per_request"] = round(sum(per_request.values()), 1) if answered else None
    step["kept_up"] = kept_up(step)
    step["resolved_later"] = stats.resolved_later
    if opts.check_invariants:
        step["invariants"] = await check_model(
            gen, stack.gateway_url, credit_url=stack.url("credit")
        )
    inv = step.get("invariants")
    print(
        f"[bench]   achieved {step['achieved_rps']} req/s, p99 "
        f"{step['latency_ms']['p99']} ms, lag p99 {step['read_model_lag_ms']['p99']} ms, "
        f"errors {step['errors']}, stack CPU {step['stack_cpu_ms_per_request']} ms/request, "
        f"kept up: {step['kept_up']}, invariants: "
        + (
            "not checked"
            if inv is None
            else f"{inv['violations']} violations ({inv['operations']} operations, "
            f"{inv['check_seconds']} s)"
        ),
        file=sys.stderr,
        flush=True,
    )
    return step


def _superuser_url(stack: Stack) -> str:
    postgres = stack.infra.postgres
    if postgres is None:
        raise RuntimeError("--pg-statements needs the PostgreSQL the bench starts")
    return postgres.superuser_url


def _held(step: dict[str, Any]) -> bool:
    inv = step.get("invariants")
    return bool(step["kept_up"]) and (inv is None or bool(inv["held"]))


async def _profile(
    stack: Stack, gen: LoadGenerator, scraper: Scraper, opts: Options, rate: float
) -> dict[str, Any]:
    """One more step at `rate` with py-spy on every service's (first) process: raw stacks in
    .run/bench-profiles/<label>/, a flame graph per service in `svg_dir`, and each service's
    CPU by category in the result."""
    print(f"[bench] profile: {rate:g} req/s with py-spy", file=sys.stderr, flush=True)
    raw = repo_root() / ".run" / "bench-profiles" / opts.label
    if raw.exists():
        shutil.rmtree(raw)
    await analyze_databases(stack.database_url)
    step = await _measure_step(stack, gen, scraper, opts, rate, profile_to=raw)
    svg_dir = opts.svg_dir or opts.out_dir
    svg_dir.mkdir(parents=True, exist_ok=True)
    services: dict[str, Any] = {}
    for path in sorted(raw.glob("*.txt")):
        prof = Profile.read(path)
        if not prof.samples:
            continue
        svg = f"flame-{opts.label}-{path.stem}.svg"
        (svg_dir / svg).write_text(
            flamegraph_svg(prof, f"{path.stem} at {rate:g} req/s ({opts.label})")
        )
        own, incl = prof.top(15)
        services[path.stem] = {
            "samples": prof.samples,
            "categories": prof.categories(),
            "top_self": own,
            "top_inclusive": incl,
            "svg": svg,
        }
    return {"rate": rate, "step": step, "services": services}


async def run(stack: Stack, opts: Options) -> dict[str, Any]:
    extra_gateways = await asyncio.to_thread(_start_gateways, stack, opts.gateways)
    if opts.instances > 1:
        print(
            f"[bench] {opts.instances} processes per consumer service", file=sys.stderr, flush=True
        )
        await _start_consumer_instances(stack, opts.instances)
    result: dict[str, Any] = {
        "label": opts.label,
        "steps": [],
        "gateways": opts.gateways,
        "instances": opts.instances,
    }
    if opts.pg_statements:
        await pgstatements.enable(_superuser_url(stack))
    if not opts.skip_ceiling:
        print("[bench] ceiling: pgbench, Kafka producer", file=sys.stderr, flush=True)
        result["pgbench"] = await pgbench(stack.database_url)
        result["kafka_producer"] = await kafka_producer(stack.kafka_bootstrap_servers)
        print(f"[bench] {result['pgbench']} {result['kafka_producer']}", file=sys.stderr)
    if not opts.skip_floor:
        print("[bench] floor: the minimal app at saturation", file=sys.stderr, flush=True)
        result["floor"] = await floor.measure(
            stack.database_url,
            postgres_pid=stack.infra.postgres.pid if stack.infra.postgres else None,
        )
        print(f"[bench] floor {result['floor']}", file=sys.stderr, flush=True)
    variants = _variants(stack, opts.ab_refs, database_tcp=opts.ab_database_tcp)
    if len(variants) > 1:
        result["variants"] = [v.name for v in variants]
    current = variants[-1]  # the stack started with this checkout
    gen = LoadGenerator(
        stack.gateway_url, stack.operator_token, extra_gateway_urls=tuple(extra_gateways)
    )
    scraper = Scraper(stack)
    try:
        print("[bench] set-up through the API", file=sys.stderr, flush=True)
        await gen.setup(
            chains=opts.chains,
            stores_per_chain=opts.stores,
            customers_per_chain=opts.customers,
            probes_per_chain=opts.probes,
        )
        result["fixture"] = {
            "chains": opts.chains,
            "stores_per_chain": opts.stores,
            "customers": opts.chains * (opts.customers + opts.probes),
            "probe_customers": opts.chains * opts.probes,
        }
        print("[bench] warm-up", file=sys.stderr, flush=True)
        await gen.run_step(opts.warmup_rate, opts.warmup_seconds)
        await _wait_drained(scraper, 60)
        for i, rate in enumerate(opts.rates):
            # variants alternate direction from rate to rate (A B, B A, ...): one restart per
            # rate, and neither variant always runs first
            order = variants if i % 2 == 0 else variants[::-1]
            held_any = False
            for variant in order:
                if variant is not current:
                    print(f"[bench] switching to {variant.name}", file=sys.stderr, flush=True)
                    await _switch(stack, variant)
                    current = variant
                    # a warm-up after the restart (caches, connections) that is not measured
                    await gen.run_step(opts.warmup_rate / 2, opts.warmup_seconds / 2)
                    await _wait_drained(scraper, 60)
                print(
                    f"[bench] step {rate:g} req/s for {opts.step_seconds:g} s"
                    + (f" ({variant.name})" if variant.name else ""),
                    file=sys.stderr,
                    flush=True,
                )
                analyzed = await analyze_databases(stack.database_url)
                step = await _measure_step(stack, gen, scraper, opts, rate)
                step["analyze_seconds"] = round(analyzed, 2)
                if variant.name:
                    step["variant"] = variant.name
                result["steps"].append(step)
                held_any = held_any or _held(step)
                inv = step.get("invariants")
                if inv is not None and not inv["held"]:
                    held_any = False
                    break
            if not held_any:
                break
        if len(variants) > 1:
            result["best_rate_by_variant"] = {
                v.name: best_rate([s for s in result["steps"] if s.get("variant") == v.name])
                for v in variants
            }
        result["best_rate"] = best_rate(  # this checkout's
            [s for s in result["steps"] if s.get("variant", "") == variants[-1].name]
        )
        if (opts.profile or opts.recovery_service) and current is not variants[-1]:
            # the profile and the recovery are of this checkout's code, whichever ran last
            print(f"[bench] switching to {variants[-1].name}", file=sys.stderr, flush=True)
            await _switch(stack, variants[-1])
            current = variants[-1]
            await gen.run_step(opts.warmup_rate / 2, opts.warmup_seconds / 2)
            await _wait_drained(scraper, 60)
        if opts.profile:
            rate = opts.profile_rate or result["best_rate"] or opts.rates[0]
            result["profile"] = await _profile(stack, gen, scraper, opts, rate)
        if opts.recovery_service:
            rate = opts.recovery_rate or max(opts.rates[0], (result["best_rate"] or 0) / 2)
            result["recovery"] = await _recovery(stack, gen, scraper, opts, rate)
    finally:
        await gen.close()
        await scraper.close()
    return result


async def _recovery(
    stack: Stack, gen: LoadGenerator, scraper: Scraper, opts: Options, rate: float
) -> dict[str, Any]:
    """kill -9 one consumer service under a steady open-loop rate, restart it, measure when
    it consumes again and when its backlog is gone; then the invariants once more."""
    service = opts.recovery_service
    duration = opts.recovery_before_seconds + opts.recovery_after_seconds
    print(
        f"[bench] recovery: {rate:g} req/s for {duration:g} s, kill -9 {service} after "
        f"{opts.recovery_before_seconds:g} s",
        file=sys.stderr,
        flush=True,
    )
    # the service's consumer group is named after it and reads every topic it consumes
    group_topics = [name for name, spec in topics.TOPICS.items() if service in spec.consumers]
    if not group_topics:
        raise ValueError(f"recovery of {service!r}: it consumes no topic")
    lag = recovery.GroupLag(stack.kafka_bootstrap_servers, service, group_topics)
    await lag.start()
    pids: list[int] = []

    async def kill() -> None:
        pids.append(await asyncio.to_thread(stack.services.kill, service))

    async def restart() -> None:
        await asyncio.to_thread(stack.services.start_instance, service, progress=no_progress)

    try:
        figures, (stats, t0, _) = await recovery.measure(
            lag,
            load=gen.run_step(rate, duration),
            kill=kill,
            restart=restart,
            before_seconds=opts.recovery_before_seconds,
        )
    finally:
        await lag.close()
    step = summarize(stats, rate, duration, t0)
    out: dict[str, Any] = {
        "service": service,
        "rate": rate,
        "seconds": duration,
        "kill_after_seconds": opts.recovery_before_seconds,
        "killed_pid": pids[0] if pids else None,
        **figures,
        "latency_ms": step["latency_ms"],
        "accepted_202": step["accepted_202"],
        "errors": step["errors"],
        "sent": step["sent"],
    }
    out["drained_seconds"] = await _wait_drained(scraper, 120)
    if opts.check_invariants:
        out["invariants"] = await check_model(
            gen, stack.gateway_url, credit_url=stack.url("credit")
        )
    print(
        f"[bench]   recovery: resumed {out['resumed_after_kill_s']} s after the kill "
        f"({out['resumed_after_restart_s']} s after the restart), backlog gone "
        f"{out['backlog_gone_after_kill_s']} s after the kill, peak lag {out['peak_lag']}, "
        "invariants: "
        + (
            "not checked"
            if "invariants" not in out
            else f"{out['invariants']['violations']} violations"
        ),
        file=sys.stderr,
        flush=True,
    )
    return out


def _versions(stack: Stack) -> dict[str, str]:
    from importlib.metadata import version

    from bench.ceiling import pgbench_version

    pg = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=repo_root(),
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "python": platform.python_version(),
        "kafka": stack.infra.kafka.version if stack.infra.kafka else "?",
        "postgresql": pg or "?",
        "pgbench": pgbench_version(),
        **{
            pkg: version(pkg)
            for pkg in (
                "faststream",
                "aiokafka",
                "SQLAlchemy",
                "asyncpg",
                "fastapi",
                "uvicorn",
                "httpx",
            )
        },
        "git_commit": commit,
        "cpus": str(os.cpu_count()),
        "kernel": platform.release(),
    }


def bench_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The services' environment: this one without any outside infrastructure or database,
    the terminal rate limit lifted (the load comes from a few terminals), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.endswith("_DATABASE_URL")
    }
    env["GATEWAY_RATE_LIMIT_PER_SECOND"] = "1000000"
    env["GATEWAY_RATE_LIMIT_BURST"] = "1000000"
    env.update(extra or {})
    return env


def baseline_rows(base: dict[str, Any], this: dict[str, Any]) -> list[dict[str, Any]]:
    """Rate by rate, the baseline's step beside this checkout's (the rates both ran)."""
    steps = {s["offered_rps"]: s for s in base["steps"]}
    rows = []
    for step in this["steps"]:
        before = steps.get(step["offered_rps"])
        if before is None:
            continue
        rows.append(
            {
                "offered_rps": step["offered_rps"],
                **{
                    f"{side}_{key}": s.get(key)
                    for side, s in (("baseline", before), ("this", step))
                    for key in ("sales_per_second", "stack_cpu_ms_per_request", "kept_up")
                },
                "baseline_latency_ms": before["latency_ms"],
                "this_latency_ms": step["latency_ms"],
            }
        )
    return rows


def main(opts: Options) -> dict[str, Any]:
    if opts.baseline_ref:
        ref = opts.baseline_ref
        print(f"[bench] baseline: the whole run on {ref} first", file=sys.stderr, flush=True)
        base = main(
            replace(opts, baseline_ref=None, code_ref=ref, label=f"{opts.label}-{_short_sha(ref)}")
        )
        print("[bench] then this checkout", file=sys.stderr, flush=True)
        result = main(replace(opts, baseline_ref=None))
        result["baseline"] = {
            "ref": ref,
            "label": base["label"],
            "git_commit": _short_sha(ref),
            "steps": baseline_rows(base, result),
        }
        path = opts.out_dir / f"pipeline-{opts.label}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        return result
    env = bench_env(opts.service_env)
    started = time.time()
    code_dir: tempfile.TemporaryDirectory[str] | None = None
    services = SERVICE_NAMES
    if opts.code_ref:
        code_dir = tempfile.TemporaryDirectory(prefix="bench-code-")
        env["PYTHONPATH"] = _export(opts.code_ref, Path(code_dir.name))
        services = services_at(Path(code_dir.name))
    stack = start_stack(
        opts.name,
        ports=ServicePorts.free(),
        env=env,
        use_env=False,
        ready_timeout=240.0,
        services=services,
        # a ref older than stop 23 reads a database name from a socket URL's path: over TCP
        services_database_url=over_tcp if opts.code_ref else None,
        postgres_options=pgstatements.OPTIONS if opts.pg_statements else None,
    )
    try:
        result = run_on_uvloop(run(stack, opts))
        result["versions"] = _versions(stack)
        result["service_env"] = opts.service_env or {}
        result["command"] = opts.command
        result["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        result["step_seconds"] = opts.step_seconds
        result["load_before"] = os.getloadavg()
        if opts.code_ref:
            result["code_ref"] = opts.code_ref
            result["versions"]["git_commit"] = _short_sha(opts.code_ref)
    finally:
        stack.stop()
        purge_run_dir(stack.run_dir, keep_logs=True)
        if code_dir is not None:
            code_dir.cleanup()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    path = opts.out_dir / f"pipeline-{opts.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"[bench] wrote {path}", file=sys.stderr)
    return result
