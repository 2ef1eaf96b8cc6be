"""The rules of reminder tasks, as pure decisions the service layer carries out.

* A customer has at most one open task. It lists the overdue sales, starts at level 1 when
  the customer becomes overdue, and closes itself ("paid") when no overdue debt is left.
* While the customer stays overdue, every `reminder_repeat_days` the reminder is re-raised:
  an open task moves to the next level; if staff completed the last one, a new task opens at
  the next level.
* A sale that becomes overdue while a task is open is added to it; one that becomes overdue
  while the customer is already overdue with no open task (staff completed it) opens a task
  at the next level right away: it is news for customer service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from uuid import UUID

OPEN = "open"
DONE = "done"


@dataclass(frozen=True)
class TaskState:
    """What the rules need to know about a task."""

    level: int
    status: str
    raised_at: datetime
    closed_reason: str | None = None


class Decision(Enum):
    NOTHING = "nothing"
    REFRESH_OPEN = "refresh_open"
    OPEN_NEW = "open_new"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    level: int = 0


def on_sale_overdue(
    *,
    sale_is_new: bool,
    open_task: TaskState | None,
    last_task: TaskState | None,
    overdue_before: bool,
) -> Outcome:
    """A sale was reported overdue. A fact seen before (a redelivery, a re-publication)
    never opens a task."""
    if open_task is not None:
        return Outcome(Decision.REFRESH_OPEN, open_task.level)
    if not sale_is_new:
        return Outcome(Decision.NOTHING)
    if overdue_before and last_task is not None:
        return Outcome(Decision.OPEN_NEW, last_task.level + 1)
    return Outcome(Decision.OPEN_NEW, 1)


def on_scan(
    *,
    open_task: TaskState | None,
    last_task: TaskState | None,
    still_overdue: bool,
    now: datetime,
    repeat_days: int,
) -> Outcome:
    """The periodic re-raise for a customer: only while still overdue, once per period."""
    if not still_overdue:
        return Outcome(Decision.NOTHING)
    period = timedelta(days=repeat_days)
    if open_task is not None:
        if now >= open_task.raised_at + period:
            return Outcome(Decision.ESCALATE, open_task.level + 1)
        return Outcome(Decision.NOTHING)
    if last_task is None or last_task.closed_reason != "completed":
        # overdue but no task (the last one was closed as paid, or none was ever raised)
        return Outcome(Decision.OPEN_NEW, 1)
    if now >= last_task.raised_at + period:
        return Outcome(Decision.OPEN_NEW, last_task.level + 1)
    return Outcome(Decision.NOTHING)


def should_close_paid(open_task: TaskState | None, overdue_amount: Decimal) -> bool:
    """The open task closes itself once the overdue debt is paid."""
    return open_task is not None and overdue_amount <= 0


@dataclass(frozen=True)
class OverdueSale:
    sale_id: UUID
    due_date: date
    amount_owed: Decimal
    discount: Decimal
    discount_revoked: bool


def days_overdue(due_date: date, today: date) -> int:
    return max(0, (today - due_date).days)


def revoke_actions(sales: list[OverdueSale], overdue_discount: str) -> list[dict[str, str]]:
    """One-click discount revocation, only under `offer`, for sales with a discount left."""
    if overdue_discount != "offer":
        return []
    return [
        {
            "action": "revoke_discount",
            "sale_id": str(s.sale_id),
            "href": f"/v1/sales/{s.sale_id}/revoke-discount",
        }
        for s in sales
        if s.discount > 0 and not s.discount_revoked and s.amount_owed > 0
    ]


# --------------------------------------------------------------------------- webhooks


def backoff_seconds(attempts_made: int, base: float, cap: float) -> float:
    """Delay before the next try after `attempts_made` failed tries: base, 2 base, 4 base..."""
    return float(min(cap, base * (2 ** max(0, attempts_made - 1))))
