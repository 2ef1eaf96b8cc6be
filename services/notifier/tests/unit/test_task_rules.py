"""Task state rules: one open task, levels, re-raise timing, closing, actions, back-off."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.tasks import (
    DONE,
    OPEN,
    Decision,
    OverdueSale,
    TaskState,
    backoff_seconds,
    on_sale_overdue,
    on_scan,
    revoke_actions,
    should_close_paid,
)

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


def task(level: int, status: str = OPEN, days_ago: int = 0, reason: str | None = None) -> TaskState:
    return TaskState(level, status, NOW - timedelta(days=days_ago), reason)


def test_an_overdue_sale_seen_before_never_opens_a_second_task() -> None:
    out = on_sale_overdue(
        sale_is_new=False,
        open_task=None,
        last_task=task(1, DONE, 1, "completed"),
        overdue_before=True,
    )
    assert out.decision is Decision.NOTHING


@pytest.mark.parametrize(
    ("open_task", "last_task", "overdue_before", "decision", "level"),
    [
        (None, None, False, Decision.OPEN_NEW, 1),
        (task(2), task(2), True, Decision.REFRESH_OPEN, 2),
        (None, task(1, DONE, 2, "completed"), True, Decision.OPEN_NEW, 2),
        (None, task(3, DONE, 20, "paid"), False, Decision.OPEN_NEW, 1),
    ],
    ids=[
        "the-first-opens-a-task-at-level-1",
        "another-joins-the-open-task",
        "after-a-completed-call-it-opens-the-next-level",
        "overdue-again-after-paying-starts-at-level-1",
    ],
)
def test_a_new_overdue_sale_opens_or_joins_a_task_at_its_level(
    open_task: TaskState | None,
    last_task: TaskState | None,
    overdue_before: bool,
    decision: Decision,
    level: int,
) -> None:
    out = on_sale_overdue(
        sale_is_new=True, open_task=open_task, last_task=last_task, overdue_before=overdue_before
    )
    assert (out.decision, out.level) == (decision, level)


def test_open_task_moves_to_the_next_level_after_the_repeat_period() -> None:
    def decision_when_raised(days_ago: int) -> Decision:
        raised = task(1, days_ago=days_ago)
        return on_scan(
            open_task=raised, last_task=raised, still_overdue=True, now=NOW, repeat_days=7
        ).decision

    assert decision_when_raised(7) is Decision.ESCALATE
    assert decision_when_raised(6) is Decision.NOTHING


def test_completed_task_is_followed_by_a_new_one_at_the_next_level_while_overdue() -> None:
    last = task(2, DONE, 7, "completed")
    out = on_scan(open_task=None, last_task=last, still_overdue=True, now=NOW, repeat_days=7)
    assert (out.decision, out.level) == (Decision.OPEN_NEW, 3)
    out = on_scan(open_task=None, last_task=last, still_overdue=False, now=NOW, repeat_days=7)
    assert out.decision is Decision.NOTHING


@given(st.integers(1, 30), st.integers(0, 100), st.integers(1, 10), st.booleans())
def test_scan_never_raises_before_the_period_nor_for_a_paid_customer(
    repeat: int, age: int, level: int, overdue: bool
) -> None:
    open_task = task(level, days_ago=age)
    out = on_scan(
        open_task=open_task, last_task=open_task, still_overdue=overdue, now=NOW, repeat_days=repeat
    )
    if not overdue or age < repeat:
        assert out.decision is Decision.NOTHING
    else:
        assert (out.decision, out.level) == (Decision.ESCALATE, level + 1)


def test_open_task_closes_itself_when_the_overdue_debt_is_paid() -> None:
    assert should_close_paid(task(1), Decimal("0.00"))
    assert not should_close_paid(task(1), Decimal("0.01"))
    assert not should_close_paid(None, Decimal("0.00"))


def test_revoke_action_only_under_offer_for_sales_with_a_discount_not_yet_revoked() -> None:
    with_discount = OverdueSale(
        uuid.uuid4(), date(2026, 1, 31), Decimal("30"), Decimal("10"), False
    )
    revoked = OverdueSale(uuid.uuid4(), date(2026, 1, 31), Decimal("30"), Decimal("10"), True)
    no_discount = OverdueSale(uuid.uuid4(), date(2026, 1, 31), Decimal("30"), Decimal("0"), False)
    sales = [with_discount, revoked, no_discount]
    assert revoke_actions(sales, "offer") == [
        {
            "action": "revoke_discount",
            "sale_id": str(with_discount.sale_id),
            "href": f"/v1/sales/{with_discount.sale_id}/revoke-discount",
        }
    ]
    assert revoke_actions(sales, "keep") == revoke_actions(sales, "revoke") == []


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 2, 20) for n in range(1, 6)] == [2, 4, 8, 16, 20]
