"""The stall the chaos report gives for a scenario: the longest time no till got a final answer,
and the longest one request waited."""

from __future__ import annotations

from tools.chaos.driver import Operation, stall_after, stall_of


def _op(sent: float, answered: float) -> Operation:
    return Operation(
        "sale", "POST", "/v1/sales", {}, f"k-{sent}", status=201, sent_at=sent, answered_at=answered
    )


def test_the_stall_is_the_longest_gap_between_final_answers_during_the_run() -> None:
    ops = [_op(0.0, 1.0), _op(0.5, 2.0), _op(1.0, 9.5), _op(2.0, 10.0), _op(9.6, 10.2)]
    stall = stall_of(ops, since=0.0, until=20.0)
    assert (stall.gap, stall.gap_start) == (7.5, 2.0)  # nothing answered from 2.0 to 9.5
    assert stall.longest_wait == 8.5  # sent at 1.0, answered (after its 202s) at 9.5


def test_answers_outside_the_run_do_not_count() -> None:
    settled_later = _op(5.0, 40.0)  # answered only by the settling retries
    never = Operation("sale", "POST", "/v1/sales", {}, "k-none", sent_at=6.0)
    stall = stall_of([_op(0.0, 1.0), _op(1.0, 2.0), settled_later, never], since=0.0, until=30.0)
    assert (stall.gap, stall.longest_wait) == (1.0, 1.0)


def test_each_fault_gets_the_stall_that_spans_it_not_an_earlier_one() -> None:
    ops = [_op(0.0, 1.0), _op(1.0, 20.0), _op(19.0, 21.0), _op(21.0, 22.0), _op(22.0, 27.0)]
    # a fault at 5.0: nothing answered from 1.0 to 20.0, the whole gap counts
    assert stall_after(ops, fault_at=5.0, until=21.5) == 19.0
    # a later fault at 21.5 only sees the gaps from its time on
    assert stall_after(ops, fault_at=21.5, until=30.0) == 5.0
