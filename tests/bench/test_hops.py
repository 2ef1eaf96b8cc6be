"""The hop breakdown of a bench step: each till operation's transactions across the gateway,
credit and loyalty, put in order from their outbox rows and the gateway's stored outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.hops import Row, breakdown, timelines

from contracts.credit.v1 import ApplyBonuses, SaleCompleted
from contracts.gateway.v1 import RecordSale
from contracts.loyalty.v1 import BonusesApplied, BonusMovementRecorded

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CHAIN = "c0000000-0000-0000-0000-000000000000"


def _at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def _card_sale(
    n: int, hops: tuple[float, float, float, float]
) -> tuple[list[Row], tuple[str, str], datetime]:
    """A card sale `n` that started at n seconds and took `hops` ms between its transactions."""
    corr, sale = f"corr-{n}", f"sale-{n}"
    start = n * 1000.0
    t = [start]
    for h in hops:
        t.append(t[-1] + h)
    rows = [
        Row(
            "gateway",
            corr,
            RecordSale.TYPE,
            _at(t[0]),
            _at(t[0] + 2),
            {"sale_id": sale, "chain_id": CHAIN},
        ),
        Row("credit", corr, ApplyBonuses.TYPE, _at(t[1]), _at(t[1] + 2)),
        # loyalty's answer and its movement, written by one transaction: one step
        Row("loyalty", corr, BonusesApplied.TYPE, _at(t[2]), _at(t[2] + 3)),
        Row("loyalty", corr, BonusMovementRecorded.TYPE, _at(t[2]), _at(t[2] + 3)),
        Row("credit", corr, SaleCompleted.TYPE, _at(t[3]), _at(t[3] + 2)),
    ]
    return rows, (CHAIN, sale), _at(t[4])


def test_a_card_sale_is_the_gateway_credit_loyalty_credit_gateway_path() -> None:
    rows, key, done = _card_sale(1, (5.0, 6.0, 7.0, 8.0))
    (steps,) = timelines(rows, {key: done})
    assert [s for s, _ in steps] == ["gateway", "credit", "loyalty", "credit", "gateway"]
    assert steps[-1][1] == done


def test_an_operation_without_a_stored_outcome_or_a_command_is_left_out() -> None:
    rows, key, _ = _card_sale(1, (5.0, 6.0, 7.0, 8.0))
    assert timelines(rows, {}) == []  # no outcome stored in the window
    without_command = [r for r in rows if r.service != "gateway"]
    assert timelines(without_command, {key: _at(99)}) == []


def test_the_tail_names_the_hop_that_grows() -> None:
    rows: list[Row] = []
    completed = {}
    for n in range(40):
        # every 20th sale waits 100 ms more between loyalty's answer and credit's confirmation
        slow = 100.0 if n % 20 == 0 else 0.0
        r, key, done = _card_sale(n, (5.0, 6.0, 7.0 + slow, 8.0))
        rows += r
        completed[key] = done
    result = breakdown(rows, completed)
    assert result["operations"] == 40
    path = result["paths"]["gateway>credit>loyalty>credit>gateway"]
    assert path["n"] == 40
    assert path["tail_n"] == 2
    by_hop = {h["hop"]: h for h in path["hops"]}
    assert list(by_hop) == [
        "gateway -> credit",
        "credit -> loyalty",
        "loyalty -> credit",
        "credit -> gateway",
    ]
    assert by_hop["loyalty -> credit"]["tail_mean"] == 107.0
    assert by_hop["loyalty -> credit"]["p50"] == 7.0
    assert by_hop["gateway -> credit"]["tail_mean"] == 5.0
    assert path["total_ms"]["p50"] == 26.0
    assert path["total_ms"]["p99"] == 126.0
    assert result["relay_ms"] == {
        "credit": {"p50": 2.0, "p99": 2.0},
        "gateway": {"p50": 2.0, "p99": 2.0},
        "loyalty": {"p50": 3.0, "p99": 3.0},
    }


def test_the_report_has_a_row_per_step_and_path_and_none_without_paths() -> None:
    from bench.render import _hops_table

    rows, key, done = _card_sale(1, (5.0, 6.0, 7.0, 8.0))
    step = {"offered_rps": 20.0, "hops": breakdown(rows, {key: done})}
    table = _hops_table([step])
    (row,) = [line for line in table if line.startswith("| 20 req/s")]
    assert "gateway>credit>loyalty>credit>gateway (1)" in row
    assert "credit -> loyalty 6 / 6" in row
    # an older ref's tables (an error), or no operation matched: no table at all
    assert _hops_table([{"offered_rps": 20.0, "hops": {"error": "UndefinedColumnError"}}]) == []
    assert _hops_table([{"offered_rps": 20.0, "hops": breakdown(rows, {})}]) == []
