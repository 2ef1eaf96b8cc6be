"""Scenarios: one devstack stack of its own (Kafka, PostgreSQL, the five services on free
loopback ports), the driver sending traffic, a fault injector acting on the stack's
processes by PID, then drain, invariants and the report.

With `brokers=3` the stack's Kafka is a three-node cluster and the cluster scenarios
(`kill-broker`, `rolling-restart`) can run: each with four instances of every consumer service,
a broker killed (or stopped) under load and started again, and the stall the tills saw.

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
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from devstack.ports import free_port
from devstack.procs import no_progress
from devstack.services import ServicePorts
from devstack.stack import Stack, purge_run_dir, start_stack
from servicekit.settings import with_database
from tools.chaos import invariants, kafka_tools
from tools.chaos.driver import CustomerModel, Driver, setup_chains, stall_after, stall_of

CONSUMERS = ("credit", "loyalty", "reporting", "notifier")
#: scenarios that need a three-broker cluster (`--brokers 3`)
CLUSTER_SCENARIOS = ("kill-broker", "rolling-restart")
#: instances of every consumer service while a cluster scenario runs
CLUSTER_INSTANCES = 4
#: how long a killed broker stays down, under load on the two others
BROKER_DOWN_SECONDS = 8.0
#: how long a restarted broker may take to be back in every ISR
CATCH_UP_WITHIN = 240.0
FAST_JOBS = {
    "OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "NOTIFIER_REMINDER_SCAN_INTERVAL_SECONDS": "1",
    "KAFKA_TOPIC_PARTITIONS": "3",
    # the driver is many tills at once: the per-terminal limit is tested in the security tests
    "GATEWAY_RATE_LIMIT_PER_SECOND": "500",
    "GATEWAY_RATE_LIMIT_BURST": "1000",
    # snapshots of reporting's read models under the faults: each scenario's rebuild starts
    # from the newest one (and the log since), so the snapshots' consistency is checked too
    "REPORTING_SNAPSHOT_INTERVAL_SECONDS": "20",
}
#: the hostile scenario: share of each customer's operations replaced by hostile input
HOSTILE_SHARE = 0.15
#: "every request gets a final answer": a 202 ends within 10 s under normal load (api.md); the
#: hostile scenario holds every operation to it (`--final-within` on a machine that is not)
FINAL_WITHIN_SECONDS = 10.0
_DUPLICATES = re.compile(r"^messages_duplicate_total\{[^}]*\}\s+([0-9.e+]+)$", re.M)
_DEAD = re.compile(r"^messages_dead_lettered_total\{[^}]*\}\s+([0-9.e+]+)$", re.M)


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
    answers_202: int = 0
    #: longest time no request got a final answer (every till waiting), and when it began
    stall_seconds: float = 0.0
    stall_at: str = ""
    #: longest one request waited for its final answer (202s and retries included)
    longest_wait_seconds: float = 0.0
    #: longest a restarted broker took until no partition was under-replicated (cluster)
    catch_up_seconds: float | None = None
    #: 5xx answers the tills got (the hostile scenario: each one is a violation)
    answers_5xx: int = 0
    #: the hostile scenario: hostile requests sent, by kind (tools/chaos/hostile.py), the
    #: operations not final within 10 s, and what is left in flight once drained
    hostile: dict[str, int] = field(default_factory=dict)
    slower_than_final: int = 0
    #: answers by code of the hostile requests refused (amount_out_of_range: a balance that
    #: would have reached 10^13)
    hostile_codes: dict[str, int] = field(default_factory=dict)
    left_in_flight: dict[str, int] = field(default_factory=dict)
    #: (what, monotonic time) of each broker fault, for the stall each one caused
    fault_marks: list[tuple[str, float]] = field(default_factory=list)
    #: "what: stall" per broker fault
    fault_stalls: list[str] = field(default_factory=list)
    #: operations sent past the planned ones while the traffic waited for the first fault
    #: (`start_faults`); `operations` counts them too
    held: int = 0
    #: discount revocations answered, by outcome (`revoked`, or the refusal's code); also
    #: counted in `operations`, `accepted` and `refused`
    revocations: dict[str, int] = field(default_factory=dict)
    #: of them, those sent more than once before their final answer
    revocations_retried: int = 0
    #: the planned revocations among them, by outcome
    revocations_planned: dict[str, int] = field(default_factory=dict)

    @property
    def tested_something(self) -> bool:
        if self.name == "hostile" and not self.hostile:
            return False
        return self.redeliveries > 0

    def line(self) -> str:
        flag = "" if self.tested_something else "  <-- NO REDELIVERIES: tested nothing"
        return (
            f"{self.name:<22} ops={self.operations:<6} accepted={self.accepted:<6} "
            f"refused={self.refused:<5} settled={self.settled:<3} "
            f"unanswered={self.unanswered:<3} "
            f"retries={self.attempts - self.operations:<5} faults={self.faults:<3} "
            f"redeliveries={self.redeliveries:<6} dead_lettered={self.dead_lettered:<4} "
            f"violations={len(self.violations):<3} drain={self.drain_seconds:.1f}s "
            f"total={self.seconds:.0f}s {self.revocations_text()}{flag}"
        )

    def revocations_text(self) -> str:
        """`revocations=N (already_revoked=a not_overdue=b revoked=c ...) planned=P
        (revoked=d ...) retried=M`"""

        def by_outcome(counts: dict[str, int]) -> str:
            outcomes = " ".join(f"{k}={n}" for k, n in sorted(counts.items()))
            return f"{sum(counts.values())} ({outcomes})"

        return (
            f"revocations={by_outcome(self.revocations)} "
            f"planned={by_outcome(self.revocations_planned)} "
            f"retried={self.revocations_retried}"
        )

    def stall_line(self) -> str:
        """The tills' view: the longest stall, the longest single wait, the 202s."""
        line = (
            f"{'':<22} stall={self.stall_seconds:.1f}s (at {self.stall_at or '-'}) "
            f"longest_wait={self.longest_wait_seconds:.1f}s 202s={self.answers_202} "
            f"held_ops={self.held}"
        )
        if self.catch_up_seconds is not None:
            line += f" in_sync_again={self.catch_up_seconds:.1f}s"
        if self.name == "hostile":
            line += (
                f" 5xx={self.answers_5xx} not_final_within_10s={self.slower_than_final}"
                f" left_in_flight={sum(self.left_in_flight.values())}"
            )
        if self.fault_stalls:
            line += "\n" + f"{'':<22} stall per fault: " + "; ".join(self.fault_stalls)
        return line

    def hostile_line(self) -> str:
        """The hostile requests sent among the traffic, by kind."""
        kinds = " ".join(f"{k}={n}" for k, n in sorted(self.hostile.items()))
        codes = " ".join(f"{k}={n}" for k, n in sorted(self.hostile_codes.items()))
        return (
            f"{'':<22} hostile={sum(self.hostile.values())}: {kinds}\n"
            f"{'':<22} hostile answers: {codes}"
        )


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
        self.last[instance] = (
            sum(float(v) for v in _DUPLICATES.findall(text)),
            sum(float(v) for v in _DEAD.findall(text)),
        )

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
    short: bool = False

    def log(self, text: str, *, fault: bool = True) -> None:
        """An entry of the fault log. The first one that is a fault (not a step that sets the
        scenario up, `fault=False`) lets the held traffic end a little later
        (`Driver.fault_injected`)."""
        self.report.faults += 1
        self.report.fault_log.append(f"{time.strftime('%H:%M:%S')} {text}")
        if fault:
            self.driver.fault_injected()

    async def pause(self, low: float, high: float) -> bool:
        """Sleep a random while; False once the driver is done (stop injecting). The traffic
        does not end before the scenario's first fault (`start_faults` holds it), so only the
        time budget can end it before the first pause."""
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
        await asyncio.to_thread(
            self.stack.services.start_instance, service, instance=instance, progress=no_progress
        )

    async def scale_consumers(self, instances: int) -> None:
        """Run `instances` processes of every consumer service: the extra ones are started
        together (each joins its service's groups: partitions move) and waited for."""
        started = []
        for service in CONSUMERS:
            for n in range(2, instances + 1):
                instance = f"{service}-{n}"
                await asyncio.to_thread(
                    self.stack.services.spawn_instance, service, instance=instance, port=free_port()
                )
                self.extra.append(instance)
                started.append(instance)
        for instance in started:
            await asyncio.to_thread(
                self.stack.services.wait_ready, instance, timeout=240.0, progress=no_progress
            )
        self.log(
            f"{instances} instances of each of {', '.join(CONSUMERS)} ({len(started)} started)",
            fault=False,
        )

    async def broker_back(self, node: int) -> None:
        """Start broker `node` again (same ports and data) and wait until it is back in the ISR
        of every partition: under-replicated partitions at 0."""
        bootstrap = self.stack.kafka_bootstrap_servers
        started = time.monotonic()
        # a JVM that starts while a dozen Python processes take the two cores may need minutes
        await asyncio.to_thread(
            self.stack.infra.restart_kafka, node=node, timeout=600.0, progress=no_progress
        )
        ready = time.monotonic() - started
        _waited, lagging = await kafka_tools.wait_in_sync(bootstrap, within=CATCH_UP_WITHIN)
        total = time.monotonic() - started
        self.report.catch_up_seconds = max(self.report.catch_up_seconds or 0.0, total)
        if lagging:
            self.report.violations.append(
                f"kafka-{node} restarted but {len(lagging)} partitions still under-replicated "
                f"after {CATCH_UP_WITHIN:.0f}s: {', '.join(lagging[:5])}"
            )
        self.log(
            f"kafka-{node} started again (ready {ready:.1f}s), under-replicated "
            f"partitions back to 0 {total:.1f}s after the start"
        )

    def controller_role(self, node: int) -> str:
        """ " (the active controller)" when `node` is the KRaft quorum's leader: killing it costs
        a controller election before the broker can be fenced (combined nodes here; production
        runs dedicated controllers)."""
        active = kafka_tools.active_controller(self.stack.run_dir / "logs")
        return " (the active controller)" if active == node else ""

    async def leaders_line(self) -> str:
        try:
            counts = await kafka_tools.leaders(self.stack.kafka_bootstrap_servers)
        except Exception as exc:  # the fault log says so; the scenario goes on
            return f"(no broker answered: {type(exc).__name__})"
        return ", ".join(
            f"kafka-{n}: {c}" if n >= 0 else f"no leader: {c}" for n, c in sorted(counts.items())
        )


# -- the scenarios on one broker -----------------------------------------------------------


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

    The extra instances start one after another, the traffic held meanwhile (starting them is
    not the fault it waits for), so the first kill meets traffic too: the messages published
    again before it must be skipped by groups of several members."""
    for service in CONSUMERS:
        instance = f"{service}-2"
        await asyncio.to_thread(
            ctx.stack.services.start_instance,
            service,
            instance=instance,
            port=free_port(),
            progress=no_progress,
        )
        ctx.extra.append(instance)
        ctx.log(f"started {instance}", fault=False)
    while await ctx.pause(1.5, 3.5):
        await ctx.kill9_and_restart(ctx.rng.choice(ctx.extra + list(CONSUMERS)))


async def hostile(ctx: Context) -> None:
    """8. no fault: hostile amounts and cross-chain ids among the normal traffic (the driver
    sends them, `Driver.hostile`; tools/chaos/hostile.py). Messages published again once, so
    the consumers also skip duplicates of hostile operations' messages, among the traffic (held
    until then, `start_faults`)."""
    if await ctx.pause(2.0, 4.0):
        await ctx.relay_duplicates()


# -- the cluster scenarios (--brokers 3) ----------------------------------------------------


async def kill_broker(ctx: Context) -> None:
    """9. kill -9 of one broker under load with four instances of every consumer service: its
    partition leaderships move to the two others (min.insync.replicas=2 still met), it stays
    down a few seconds, then it is started again and caught up (no partition under-replicated).
    Twice, two different brokers (once in the short form)."""
    await ctx.scale_consumers(CLUSTER_INSTANCES)
    nodes = [1, 2, 3]
    ctx.rng.shuffle(nodes)
    for node in nodes[: 1 if ctx.short else 2]:
        if not await ctx.pause(3.0, 6.0):
            break
        await ctx.relay_duplicates()
        ctx.log(f"leaders before: {await ctx.leaders_line()}", fault=False)
        role = ctx.controller_role(node)
        ctx.report.fault_marks.append((f"kill -9 kafka-{node}{role}", time.monotonic()))
        pid = await asyncio.to_thread(ctx.stack.infra.kill_kafka, node=node)
        ctx.log(f"kill -9 kafka-{node}{role} (pid {pid})")
        await asyncio.sleep(BROKER_DOWN_SECONDS)
        ctx.log(f"leaders with kafka-{node} down: {await ctx.leaders_line()}")
        await ctx.broker_back(node)
    await asyncio.sleep(5.0)  # load on the healed cluster
    ctx.driver.stop()


async def rolling_restart(ctx: Context) -> None:
    """10. a rolling restart of the three brokers under load, one after the other as an operator
    does it: SIGTERM (a controlled shutdown: the broker hands its leaderships over first), start
    again, wait until it is back in every ISR, then the next."""
    await ctx.scale_consumers(CLUSTER_INSTANCES)
    if not await ctx.pause(3.0, 6.0):
        ctx.driver.stop()
        return
    await ctx.relay_duplicates()
    for node in (1, 2, 3):
        started = time.monotonic()
        role = ctx.controller_role(node)
        ctx.report.fault_marks.append((f"SIGTERM kafka-{node}{role}", started))
        pid = await asyncio.to_thread(
            ctx.stack.infra.kill_kafka, signal.SIGTERM, node=node, timeout=120.0
        )
        stopped = time.monotonic() - started
        ctx.log(
            f"SIGTERM kafka-{node}{role} (pid {pid}): stopped in {stopped:.1f}s;"
            f" leaders: {await ctx.leaders_line()}"
        )
        await ctx.broker_back(node)
        await asyncio.sleep(2.0)
    ctx.log(f"leaders after: {await ctx.leaders_line()}")
    await asyncio.sleep(5.0)
    ctx.driver.stop()


def start_faults(ctx: Context, scenario: Fault) -> asyncio.Task[None]:
    """Start a scenario's fault injector, its traffic held until its first fault is in
    (`Driver.hold_for_fault`). A fast stack can answer all of a scenario's planned operations
    before its first pause ends; the scenario then injected nothing and tested nothing. An
    injector that fails ends the traffic at once (its error is raised by awaiting the task);
    one that ends without a fault stops holding it."""
    driver = ctx.driver
    driver.hold_for_fault()
    task = asyncio.create_task(scenario(ctx))

    def injector_ended(task: asyncio.Task[None]) -> None:
        driver.release()
        if not task.cancelled() and task.exception() is not None:
            driver.stop()

    task.add_done_callback(injector_ended)
    return task


SCENARIOS: dict[str, Fault] = {
    "kill-consumers": kill_consumers,
    "kill-gateway": kill_gateway,
    "kill-kafka": kill_kafka,
    "kill-postgres": kill_postgres,
    "duplicate-storm": duplicate_storm,
    "poison-messages": poison_messages,
    "many-instances": many_instances,
    "hostile": hostile,
    "kill-broker": kill_broker,
    "rolling-restart": rolling_restart,
}


async def run_scenario(
    stack: Stack,
    metrics: Metrics,
    name: str,
    *,
    seed: int,
    ops: int,
    customers_per_chain: int,
    drain_timeout: float,
    time_budget: float,
    short: bool = False,
    final_within: float = FINAL_WITHIN_SECONDS,
) -> ScenarioReport:
    report = ScenarioReport(name)
    started = time.monotonic()
    rng = random.Random(f"{seed}:{name}")
    customers = await setup_chains(
        stack.gateway_url, stack.operator_token, label=name, customers=customers_per_chain, rng=rng
    )
    metrics.mark()
    per_customer = max(1, -(-ops // len(customers)))
    if name in CLUSTER_SCENARIOS:
        # the load lasts as long as the faults do (the scenario stops the driver): starting a
        # dozen consumer processes and three broker restarts take minutes on two cores
        per_customer = 1_000_000
        time_budget = max(time_budget, 900.0)
    driver = Driver(
        stack.gateway_url,
        customers,
        seed=seed,
        ops_per_customer=per_customer,
        deadline=time.monotonic() + time_budget,
        hostile=HOSTILE_SHARE if name == "hostile" else 0.0,
    )
    ctx = Context(stack, metrics, report, driver, rng, customers, short=short)
    faults = start_faults(ctx, SCENARIOS[name])
    try:
        stats = await driver.run()
        run_ended = time.monotonic()
        await faults
        every_op = [op for c in customers for op in c.ops]
        stall = stall_of(every_op, since=driver.started_at, until=run_ended)
        report.stall_seconds, report.longest_wait_seconds = stall.gap, stall.longest_wait
        if stall.gap:
            wall = time.time() - (time.monotonic() - stall.gap_start)
            report.stall_at = time.strftime("%H:%M:%S", time.localtime(wall))
        marks = report.fault_marks
        # each fault's stall runs until the next fault (the last one's until the load ended);
        # a scenario without faults has no marks
        ends = [at for _, at in marks[1:]] + ([run_ended] if marks else [])
        for (what, at), next_at in zip(marks, ends, strict=True):
            gap = stall_after(every_op, fault_at=at, until=next_at)
            report.fault_stalls.append(f"{what}: {gap:.1f}s")
        # the faults are over: the POS retries what never got an answer
        stats = await driver.settle(within=drain_timeout)
    finally:
        if not faults.done():
            faults.cancel()
        for instance in ctx.extra:
            metrics.bank(instance)
        await asyncio.gather(
            *(asyncio.to_thread(stack.services.processes[instance].stop) for instance in ctx.extra)
        )
    report.operations = stats.sent
    report.accepted = stats.accepted
    report.refused = stats.refused
    report.unanswered = stats.unanswered
    report.settled = stats.settled
    report.attempts = stats.attempts
    report.answers_202 = stats.answers_202
    report.answers_5xx = stats.answers_5xx
    report.held = stats.held
    report.revocations = dict(stats.revocations)
    report.revocations_retried = stats.revocations_retried
    report.revocations_planned = dict(stats.revocations_planned)
    report.violations += stats.unexpected
    if name == "hostile":
        report.violations += _hostile_answers(customers, report, final_within)
    # drain: poll the invariants until they hold (read models catch up asynchronously)
    violations, report.drain_seconds = await invariants.check_until_held(
        stack.gateway_url, customers, within=drain_timeout
    )
    report.violations += violations
    if name == "hostile":
        report.left_in_flight = await _in_flight(stack, customers)
        if any(report.left_in_flight.values()):
            report.violations.append(f"left in flight once drained: {report.left_in_flight}")
    if not violations:
        report.violations += await _rebuild_differences(stack)
    if report.violations:
        _dump(name, customers, report)
    report.redeliveries, report.dead_lettered = metrics.since_mark()
    if name == "poison-messages" and report.dead_lettered == 0:
        report.violations.append("no poison message was dead-lettered")
    report.seconds = time.monotonic() - started
    return report


def run(
    *,
    seed: int,
    ops_per_scenario: int,
    customers_per_chain: int,
    scenarios: list[str],
    drain_timeout: float = 120.0,
    time_budget: float = 600.0,
    brokers: int = 1,
    short: bool = False,
    keep_logs: bool = False,
    final_within: float = FINAL_WITHIN_SECONDS,
    echo: Callable[[str], None] = print,
) -> list[ScenarioReport]:
    """Start a stack of its own (Kafka of `brokers` nodes), run the scenarios one after the
    other, stop everything."""
    needs_cluster = [s for s in scenarios if s in CLUSTER_SCENARIOS]
    if needs_cluster and brokers < 3:
        raise ValueError(f"{', '.join(needs_cluster)} need a three-broker cluster (--brokers 3)")
    name = f"chaos-{secrets.token_hex(3)}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "KAFKA_BROKERS")
        and not k.endswith("_DATABASE_URL")
    }
    env.update(FAST_JOBS)
    if brokers > 1:
        # four instances of a service share the partitions: give each one at least one
        env["KAFKA_TOPIC_PARTITIONS"] = "6"
    reports: list[ScenarioReport] = []
    stack = start_stack(
        name,
        ports=ServicePorts.free(),
        operator_token=secrets.token_urlsafe(24),
        env=env,
        use_env=False,
        ready_timeout=240.0,
        kafka_brokers=brokers,
        infra_timeout=300.0,
        progress=no_progress,
    )
    try:
        metrics = Metrics(stack)
        for scenario in scenarios:
            report = asyncio.run(
                run_scenario(
                    stack,
                    metrics,
                    scenario,
                    seed=seed,
                    ops=ops_per_scenario,
                    customers_per_chain=customers_per_chain,
                    drain_timeout=drain_timeout,
                    time_budget=time_budget,
                    short=short,
                    final_within=final_within,
                )
            )
            echo(report.line())
            echo(report.stall_line())
            if report.hostile:
                echo(report.hostile_line())
            if scenario in CLUSTER_SCENARIOS:
                for entry in report.fault_log:
                    echo(f"    {entry}")
            for violation in report.violations[:20]:
                echo(f"    VIOLATION {violation}")
            reports.append(report)
    finally:
        stack.stop(progress=no_progress)
        purge_run_dir(stack.run_dir, keep_logs=keep_logs)
        if keep_logs:
            echo(f"logs kept in {stack.run_dir / 'logs'}")
    return reports


def _hostile_answers(
    customers: list[CustomerModel], report: ScenarioReport, final_within: float
) -> list[str]:
    """No fault runs in the hostile scenario: every 5xx is a violation, and so is an operation
    (hostile or not) whose final answer came more than `final_within` (10 s) after it was
    first sent."""
    out: list[str] = []
    for c in customers:
        for op in c.ops:
            if op.hostile:
                report.hostile[op.hostile] = report.hostile.get(op.hostile, 0) + 1
                answer = f"{op.status} {(op.answer or {}).get('code', '')}".strip()
                report.hostile_codes[answer] = report.hostile_codes.get(answer, 0) + 1
            if op.answers_5xx:
                out.append(
                    f"{op.hostile or op.kind} {op.method} {op.path}: {op.answers_5xx} "
                    f"5xx answers, the last {op.last_5xx} (body "
                    f"{json.dumps(op.body)[:200]})"
                )
            if op.status is not None and op.answered_at - op.sent_at > final_within:
                report.slower_than_final += 1
                out.append(
                    f"{op.hostile or op.kind} {op.path} of customer {c.customer_id}: "
                    f"final after {op.answered_at - op.sent_at:.1f}s "
                    f"({op.attempts} attempts)"
                )
    return out


async def _in_flight(stack: Stack, customers: list[CustomerModel]) -> dict[str, int]:
    """What is still going on for the scenario's chains once drained: credit's customers with an
    operation in flight or parked commands, the gateway's pending operations (a wedged customer
    shows in all three)."""
    chains = sorted({uuid.UUID(c.chain.chain_id) for c in customers})
    credit = await asyncpg.connect(with_database(stack.database_url, "credit"))
    gateway = await asyncpg.connect(with_database(stack.database_url, "gateway"))
    try:
        in_flight = await credit.fetchval(
            "SELECT count(*) FROM customers WHERE chain_id = ANY($1::uuid[]) "
            "AND in_flight IS NOT NULL",
            chains,
        )
        parked = await credit.fetchval(
            "SELECT count(*) FROM parked_commands p JOIN customers c USING (customer_id) "
            "WHERE c.chain_id = ANY($1::uuid[])",
            chains,
        )
        pending = await gateway.fetchval(
            "SELECT count(*) FROM operations WHERE chain_id = ANY($1::uuid[]) "
            "AND status = 'pending'",
            chains,
        )
    finally:
        await credit.close()
        await gateway.close()
    return {"in_flight": int(in_flight), "parked": int(parked), "pending": int(pending)}


async def _rebuild_differences(stack: Stack) -> list[str]:
    """Rebuild reporting's read models from the newest snapshot (taken under the faults) and
    the log since (live, swapped in) and compare them row by row with what the live consumer
    built under the faults: any difference, or a refusal, is a violation."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reporting.rebuild",
        "--verify",
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ["rebuild (newest snapshot + the log since) did not finish within 600 s"]
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        return [
            f"rebuild (newest snapshot + the log since) failed or differs from the live "
            f"read models: {' | '.join(tail)}"
        ]
    return []


def _dump(name: str, customers: list[CustomerModel], report: ScenarioReport) -> None:
    """The driver's model of a failed scenario, for the post-mortem (.run/chaos-reports/)."""
    folder = Path(".run") / "chaos-reports"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "violations": report.violations,
        "faults": report.fault_log,
        "customers": [
            {
                "customer_id": c.customer_id,
                "chain": c.chain.chain_id,
                "mode": c.chain.mode,
                "ops": [
                    {
                        "kind": op.kind,
                        "path": op.path,
                        "body": op.body,
                        "key": op.key,
                        "status": op.status,
                        "answer": op.answer,
                        "attempts": op.attempts,
                    }
                    for op in c.ops
                ],
            }
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
