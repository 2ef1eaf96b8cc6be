"""A scenario's traffic waits for its first fault (`runner.start_faults`): the short form's
planned operations can all be answered before a scenario's first pause ends, and a scenario
whose fault met no traffic injected nothing and tested nothing ("NO REDELIVERIES"). Here the
planned traffic is a few milliseconds long and the first pause 0.3 s; no stack is needed."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

import httpx
import pytest

from tools.chaos.driver import AFTER_FAULT_SECONDS, ChainKeys, CustomerModel, Driver
from tools.chaos.runner import Context, Fault, ScenarioReport, start_faults

PLANNED = 2  # operations per customer: all answered long before the first pause ends


async def _gateway(_request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.01)
    return httpx.Response(422, json={"code": "no_debt"})  # a final answer: no retry


def _context(*, deadline: float = 30.0) -> Context:
    chain = ChainKeys("chain-1", "balance", "admin-key", [("store-1", "terminal-key")])
    customers = [CustomerModel(chain, f"cust-{n}", f"VIP-{n}", True) for n in range(3)]
    driver = Driver(
        "http://gateway.test",
        customers,
        seed=1,
        ops_per_customer=PLANNED,
        deadline=time.monotonic() + deadline,
        transport=httpx.MockTransport(_gateway),
    )
    report = ScenarioReport("fake")
    # the fake scenarios touch neither the stack nor its metrics
    none = cast(Any, None)
    return Context(none, none, report, driver, random.Random(1), customers)


async def _run(ctx: Context, scenario: Fault) -> float:
    """The traffic with the scenario's faults as `run_scenario` drives them: when it ended
    (monotonic)."""
    faults = start_faults(ctx, scenario)
    await ctx.driver.run()
    ended = time.monotonic()
    await faults
    return ended


async def test_the_first_fault_meets_traffic_in_flight_and_traffic_runs_on_after_it() -> None:
    ctx = _context()
    pauses: list[bool] = []

    async def scenario(ctx: Context) -> None:
        ctx.log("started credit-2", fault=False)  # a step that sets up, not the fault
        while True:
            pauses.append(await ctx.pause(0.3, 0.3))
            if not pauses[-1]:
                return
            ctx.log("kill -9 credit")

    ended = await _run(ctx, scenario)

    driver, ops = ctx.driver, [op for c in ctx.customers for op in c.ops]
    assert pauses[0] is True and ctx.report.faults >= 2  # the first pause ended with traffic
    fault_at = driver.fault_at
    assert fault_at > driver.started_at
    # the fault met operations in flight, and every customer sent operations after it
    assert any(op.sent_at < fault_at < op.answered_at for op in ops)
    assert all(any(op.sent_at >= fault_at for op in c.ops) for c in ctx.customers)
    assert ended >= fault_at + AFTER_FAULT_SECONDS
    # the operations past the planned ones are operations like the others
    stats = driver.stats
    assert stats.held > 0 and stats.sent == len(ops) == PLANNED * len(ctx.customers) + stats.held
    assert stats.refused == stats.sent and stats.unanswered == 0 and stats.unexpected == []
    assert all(op.status == 422 for op in ops)


async def test_a_scenario_that_ends_without_a_fault_does_not_hold_the_traffic() -> None:
    ctx = _context()

    async def scenario(ctx: Context) -> None:
        await asyncio.sleep(0.3)
        ctx.log("started credit-2", fault=False)

    started = time.monotonic()
    ended = await _run(ctx, scenario)

    assert ended - started < 1.5 and not ctx.driver.fault_in.is_set()
    assert ctx.driver.stats.sent == len([op for c in ctx.customers for op in c.ops])


async def test_the_deadline_ends_a_held_traffic() -> None:
    ctx = _context(deadline=0.5)
    injected: list[bool] = []

    async def scenario(ctx: Context) -> None:
        injected.append(await ctx.pause(5.0, 5.0))

    started = time.monotonic()
    faults = start_faults(ctx, scenario)
    await ctx.driver.run()
    assert time.monotonic() - started < 1.5
    await faults  # its pause ends as soon as the traffic did
    assert injected == [False] and ctx.driver.stats.unanswered == 0


async def test_a_failing_injector_ends_the_held_traffic() -> None:
    ctx = _context()

    async def scenario(ctx: Context) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("the broker did not come back")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not come back"):
        await _run(ctx, scenario)
    assert time.monotonic() - started < 1.5
