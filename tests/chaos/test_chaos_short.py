"""The short form of `make chaos`: every fault scenario, and the hostile-input one, with a few
hundred operations on a stack of its own (its own Kafka and PostgreSQL, since it kills them).
Fails on any invariant violation and on a scenario that observed no redelivery (it would have
tested nothing).

`make test` shares the machine with whatever else runs on it, so here an operation of the
hostile scenario must be final within 30 s rather than the contract's 10 s under normal load
(which `make chaos` checks): a wedged customer never gets a final answer, so it fails either
way."""

from __future__ import annotations

import pytest

from tools.chaos.__main__ import SHORT
from tools.chaos.runner import CLUSTER_SCENARIOS, SCENARIOS, run, summary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_every_fault_scenario_keeps_every_invariant() -> None:
    reports = run(
        seed=7,
        ops_per_scenario=int(SHORT["ops"]),
        customers_per_chain=int(SHORT["customers"]),
        scenarios=[s for s in SCENARIOS if s not in CLUSTER_SCENARIOS],
        time_budget=float(SHORT["budget"]),
        short=True,
        final_within=30.0,
    )
    lines = "\n".join(r.line() for r in reports)
    total = summary(reports)
    assert total["violations"] == 0, (
        lines + "\n" + "\n".join(v for r in reports for v in r.violations[:10])
    )
    assert total["untested"] == [], lines
    assert all(r.unanswered == 0 for r in reports), lines
