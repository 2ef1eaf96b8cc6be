"""Scenarios: one devstack stack of its own (Kafka, PostgreSQL, the five services on free
loopback ports), the driver sending traffic, a fault injector acting on the stack's
processes by PID, then drain, invariants and the report.

Every process started here (the stack, extra instances) is stopped by PID in a `finally`,
also when a scenario fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.procs import no_progress
from devstack.services import ServicePorts
from devstack.stack import Stack, start_stack
from tools.chaos import invariants, kafka_tools
from tools.chaos.driver import CustomerModel, Driver, setup_chains

CONSUMERS = ("credit", "loyalty", "reporting", "notifier")
FAST_JOBS = {
    "OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "NOTIFIER_REMINDER_SCAN_INTERVAL_SECONDS": "1",
    "KAFKA_TOPIC_PARTITIONS": "3",
    # the driver is many tills at once: the per-terminal limit is tested in the security tests
    "GATEWAY_RATE_LIMIT_PER_SECOND": "500",
    "GATEWAY_RATE_LIMIT_BURST": "1000",
}
_DUPLICATES = re.compile(r'^messages_duplicate_total\{[^}]*\}\s+([0-9.e+]+)$', re.M)
_DEAD = re.compile(r'^messages_dead_lettered_total\{[^}]*\}\s+([0-9.e+]+)$', re.M)


@dataclass
class ScenarioReport:
    name: str
    operations: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    settled: int = 0
    attempts: int = 0
    faults: int = 0
    fault_log: list[str] = field(default_factory=list)
    redeliveries: int = 0
    dead_lettered: int = 0
    violations: list[str] = field(default_factory=list)
    drain_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def tested_something(self) -> bool:
        return self.redeliveries > 0

    def line(self) -> str:
        flag = "" if self.tested_something else "  <-- NO REDELIVERIES: tested nothing"
        return (f"{self.name:<22} ops={self.operations:<6} accepted={self.accepted:<6} "
                f"refused={self.refused:<5} settled={self.settled:<3} "
                f"unanswered={self.unanswered:<3} "
                f"retries={self.attempts - self.operations:<5} faults={self.faults:<3} "
                f"redeliveries={self.redeliveries:<6} dead_lettered={self.dead_lettered:<4} "
                f"violations={len(self.violations):<3} drain={self.drain_seconds:.1f}s "
                f"total={self.seconds:.0f}s{flag}")


class Metrics:
    """`messages_duplicate_total` (and dead letters) summed over every process of the stack,
    across restarts: each process is scraped right before it is killed and its last value
    banked, since a restarted process starts its counters at 0."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.banked = [0.0, 0.0]
        self.last: dict[str, tuple[float, float]] = {}
        self.baseline = (0.0, 0.0)

    def scrape(self, instance: str) -> None:
        port = self.stack.services.instance_ports.get(instance)
        if port is None:
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return  # down already: its last scrape stands
        self.last[instance] = (sum(float(v) for v in _DUPLICATES.findall(text)),
                               sum(float(v) for v in _DEAD.findall(text)))

    def bank(self, instance: str) -> None:
        """Scrape, then keep its counts: the process is about to die."""
        self.scrape(instance)
        dup, dead = self.last.pop(instance, (0.0, 0.0))
        self.banked[0] += dup
        self.banked[1] += dead

    def totals(self) -> tuple[int, int]:
        for instance in list(self.stack.services.processes):
            if self.stack.services.processes[instance].alive():
                self.scrape(instance)
        dup = self.banked[0] + sum(v[0] for v in self.last.values())
        dead = self.banked[1] + sum(v[1] for v in self.last.values())
        return int(dup), int(dead)

    def mark(self) -> None:
        self.baseline = tuple(float(x) for x in self.totals())  # type: ignore[assignment]

    def since_mark(self) -> tuple[int, int]:
        dup, dead = self.totals()
        return dup - int(self.baseline[0]), dead - int(self.baseline[1])


Fault = Callable[["Context"], Coroutine[Any, Any, None]]


@dataclass
class Context:
    stack: Stack
    metrics: Metrics
    report: ScenarioReport
    driver: Driver
    rng: random.Random
    customers: list[CustomerModel]
    extra: list[str] = field(default_factory=list)
    duplicated: bool = False

    def log(self, text: str) -> None:
        self.report.faults += 1
        self.report.fault_log.append(f"{time.strftime('%H:%M:%S')} {text}")

    async def pause(self, low: float, high: float) -> bool:
        """Sleep a random while; False once the driver is done (stop injecting)."""
        try:
            await asyncio.wait_for(self.driver.done.wait(), self.rng.uniform(low, high))
        except TimeoutError:
            return True
        return False

    async def relay_duplicates(self) -> None:
        """What an outbox relay killed between publishing and marking its rows sent does:
        publish already processed messages again. kill -9 alone lands in the few milliseconds
        between a consumer's database commit and its offset commit only by chance, so each
        scenario also lets this happen once, right before its first kill: the consumers must
        skip them."""
        if self.duplicated:
            return
        self.duplicated = True
        sent = await kafka_tools.republish(self.stack.kafka_bootstrap_servers, per_topic=30)
        self.log(f"outbox relay crash: {sent} messages published again")

    async def kill9_and_restart(self, instance: str, down: float = 0.5) -> None:
        await self.relay_duplicates()
        self.metrics.bank(instance)
        pid = await asyncio.to_thread(self.stack.services.kill, instance)
        self.log(f"kill -9 {instance} (pid {pid})")
        await asyncio.sleep(down)
        service = instance.split("-")[0]
        await asyncio.to_thread(self.stack.services.start_instance, service, instance=instance,
                                progress=no_progress)


# -- the seven scenarios -------------------------------------------------------------------


async def kill_consumers(ctx: Context) -> None:
    """1. kill -9 each consumer service in turn, repeatedly, and restart it."""
    turn = 0
    while await ctx.pause(1.0, 3.0):
        await ctx.kill9_and_restart(CONSUMERS[turn % len(CONSUMERS)])
        turn += 1


async def kill_gateway(ctx: Context) -> None:
    """2. kill -9 the gateway with requests in flight; the POS retries."""
    while await ctx.pause(1.5, 4.0):
        await ctx.kill9_and_restart("gateway", down=0.3)


async def kill_kafka(ctx: Context) -> None:
    """3. kill -9 the broker mid-run and restart it (same ports and data)."""
    for _ in range(2):
        if not await ctx.pause(1.0, 3.0):
            return
        pid = await asyncio.to_thread(ctx.stack.infra.kill_kafka)
        ctx.log(f"kill -9 kafka (pid {pid})")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(ctx.stack.infra.restart_kafka, progress=no_progress)
        # the consumers' redeliveries after a broker crash come from uncommitted offsets: a
        # kill -9 of credit right after makes sure one service also restarts mid-batch
        await ctx.kill9_and_restart("credit")


async def kill_postgres(ctx: Context) -> None:
    """4. PostgreSQL immediate shutdown (SIGQUIT) mid-run, and restart."""
    for _ in range(2):
        if not await ctx.pause(1.0, 3.0):
            return
        pid = await asyncio.to_thread(ctx.stack.infra.kill_postgres, signal.SIGQUIT)
        ctx.log(f"postgres immediate shutdown (pid {pid})")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(ctx.stack.infra.restart_postgres, progress=no_progress)
        # a database crash alone rolls back uncommitted batches (redelivered, not duplicates):
        # a consumer kill right after also replays batches whose effect was committed
        await ctx.kill9_and_restart(ctx.rng.choice(CONSUMERS))


async def duplicate_storm(ctx: Context) -> None:
    """5. re-publish a slice of processed messages; replay the credit group from offset 0."""
    bootstrap = ctx.stack.kafka_bootstrap_servers
    if not await ctx.pause(2.0, 3.0):
        return
    sent = await kafka_tools.republish(bootstrap, per_topic=200)
    ctx.log(f"re-published {sent} already processed messages")
    if not await ctx.pause(1.0, 2.0):
        return
    ctx.metrics.bank("credit")
    # stopped cleanly so that it leaves the group: offsets of an empty group can be reset
    await asyncio.to_thread(ctx.stack.services.processes["credit"].stop)
    replay = await kafka_tools.rewind_group(bootstrap, "credit")
    ctx.log(f"credit stopped, group 'credit' rewound to offset 0 ({replay} messages replay)")
    await asyncio.to_thread(ctx.stack.services.start_instance, "credit", progress=no_progress)
    while await ctx.pause(2.0, 3.0):
        sent = await kafka_tools.republish(bootstrap, per_topic=50)
        ctx.log(f"re-published {sent} messages")


async def poison_messages(ctx: Context) -> None:
    """6. poison messages on every input topic: dead-lettered, partitions keep moving. A
    consumer restart afterwards makes it read past them again (redeliveries of the rest)."""
    keys = [c.customer_id for c in ctx.customers]
    for _ in range(2):
        if not await ctx.pause(0.5, 2.0):
            return
        count = await kafka_tools.poison(ctx.stack.kafka_bootstrap_servers, keys=keys)
        ctx.log(f"{count} poison messages on {len(kafka_tools.INPUT_TOPICS)} topics")
        await ctx.relay_duplicates()
    while await ctx.pause(2.0, 4.0):
        await ctx.kill9_and_restart(ctx.rng.choice(CONSUMERS))


async def many_instances(ctx: Context) -> None:
    """7. several instances of each consumer service at once; kills cause rebalances.

    At least one kill, even when the operations are all answered while the extra instances
    start (they start one after another; a short run can be over by then): the messages
    published again before it must be skipped by groups of several members."""
    for service in CONSUMERS:
        instance = f"{service}-2"
        await asyncio.to_thread(ctx.stack.services.start_instance, service, instance=instance,
                                port=free_port(), progress=no_progress)
        ctx.extra.append(instance)
        ctx.log(f"started {instance}")
    while True:
        await ctx.kill9_and_restart(ctx.rng.choice(ctx.extra + list(CONSUMERS)))
        if not await ctx.pause(1.5, 3.5):
            return


SCENARIOS: dict[str, Fault] = {
    "kill-consumers": kill_consumers,
    "kill-gateway": kill_gateway,
    "kill-kafka": kill_kafka,
    "kill-postgres": kill_postgres,
    "duplicate-storm": duplicate_storm,
    "poison-messages": poison_messages,
    "many-instances": many_instances,
}


async def run_scenario(stack: Stack, metrics: Metrics, name: str, *, seed: int, ops: int,
                       customers_per_chain: int, drain_timeout: float,
                       time_budget: float) -> ScenarioReport:
    report = ScenarioReport(name)
    started = time.monotonic()
    rng = random.Random(f"{seed}:{name}")
    customers = await setup_chains(stack.gateway_url, stack.operator_token, label=name,
                                   customers=customers_per_chain, rng=rng)
    metrics.mark()
    per_customer = max(1, -(-ops // len(customers)))
    driver = Driver(stack.gateway_url, customers, seed=seed, ops_per_customer=per_customer,
                    deadline=time.monotonic() + time_budget)
    ctx = Context(stack, metrics, report, driver, rng, customers)
    faults = asyncio.create_task(SCENARIOS[name](ctx))
    try:
        stats = await driver.run()
        await faults
        # the faults are over: the POS retries what never got an answer
        stats = await driver.settle(within=drain_timeout)
    finally:
        if not faults.done():
            faults.cancel()
        for instance in ctx.extra:
            metrics.bank(instance)
            await asyncio.to_thread(stack.services.processes[instance].stop)
    report.operations = stats.sent
    report.accepted = stats.accepted
    report.refused = stats.refused
    report.unanswered = stats.unanswered
    report.settled = stats.settled
    report.attempts = stats.attempts
    report.violations += stats.unexpected
    # drain: poll the invariants until they hold (read models catch up asynchronously)
    violations, report.drain_seconds = await invariants.check_until_held(
        stack.gateway_url, customers, within=drain_timeout)
    report.violations += violations
    if not violations:
        report.violations += await _rebuild_differences(stack)
    if report.violations:
        _dump(name, customers, report)
    report.redeliveries, report.dead_lettered = metrics.since_mark()
    if name == "poison-messages" and report.dead_lettered == 0:
        report.violations.append("no poison message was dead-lettered")
    report.seconds = time.monotonic() - started
    return report


def run(*, seed: int, ops_per_scenario: int, customers_per_chain: int,
        scenarios: list[str], drain_timeout: float = 120.0, time_budget: float = 600.0,
        echo: Callable[[str], None] = print) -> list[ScenarioReport]:
    """Start a stack of its own, run the scenarios one after the other, stop everything."""
    name = f"chaos-{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
           and not k.endswith("_DATABASE_URL")}
    env.update(FAST_JOBS)
    reports: list[ScenarioReport] = []
    stack = start_stack(name, ports=ServicePorts.free(), operator_token=secrets.token_urlsafe(24),
                        env=env, use_env=False, ready_timeout=240.0, progress=no_progress)
    try:
        metrics = Metrics(stack)
        for scenario in scenarios:
            report = asyncio.run(run_scenario(
                stack, metrics, scenario, seed=seed, ops=ops_per_scenario,
                customers_per_chain=customers_per_chain, drain_timeout=drain_timeout,
                time_budget=time_budget))
            echo(report.line())
            for violation in report.violations[:20]:
                echo(f"    VIOLATION {violation}")
            reports.append(report)
    finally:
        stack.stop(purge=True, progress=no_progress)
    return reports


async def _rebuild_differences(stack: Stack) -> list[str]:
    """Rebuild reporting's read models from the log (live, swapped in) and compare them row by
    row with what the live consumer built under the faults: any difference is a violation."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reporting.rebuild", "--verify",
        env=stack.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ["rebuild from the log did not finish within 600 s"]
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        return [f"rebuild from the log differs from the live read models: {' | '.join(tail)}"]
    return []


def _dump(name: str, customers: list[CustomerModel], report: ScenarioReport) -> None:
    """The driver's model of a failed scenario, for the post-mortem (.run/chaos-reports/)."""
    folder = Path(".run") / "chaos-reports"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "violations": report.violations,
        "faults": report.fault_log,
        "customers": [
            {"customer_id": c.customer_id, "chain": c.chain.chain_id, "mode": c.chain.mode,
             "ops": [{"kind": op.kind, "path": op.path, "body": op.body, "key": op.key,
                      "status": op.status, "answer": op.answer, "attempts": op.attempts}
                     for op in c.ops]}
            for c in customers
        ],
    }
    path = folder / f"{name}-{int(time.time())}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    report.fault_log.append(f"model dumped to {path}")


def summary(reports: list[ScenarioReport]) -> dict[str, Any]:
    return {
        "operations": sum(r.operations for r in reports),
        "violations": sum(len(r.violations) for r in reports),
        "untested": [r.name for r in reports if not r.tested_something],
    }
