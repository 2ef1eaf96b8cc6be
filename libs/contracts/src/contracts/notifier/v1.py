"""Messages the notifier produces, schema version 1, on ``notifier.events.v1``.

Reminder tasks for customer service: one open task per overdue customer at most. Consumed
by reporting (optional) and external consumers (webhooks, CRM).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.base import ContractModel, Event, Text
from contracts.enums import TaskClosedReason, TaskOutcome
from contracts.money import PositiveMoney
from contracts.topics import NOTIFIER_EVENTS

__all__ = ["ReminderTaskClosed", "ReminderTaskRaised", "TaskSale"]


class TaskSale(ContractModel):
    """An overdue sale listed on a reminder task."""

    sale_id: UUID
    due_date: date
    amount_owed: PositiveMoney
    days_overdue: Annotated[int, Field(ge=1)]
    discount_revocable: bool
    """True when ``overdue_discount=offer`` and the sale has a discount not yet revoked."""


class ReminderTaskRaised(Event):
    """A reminder task was raised: new at level 1, escalated, or reopened at the next level.

    Produced by notifier when a customer becomes overdue and every ``reminder_repeat_days``
    while they stay overdue; consumed by reporting and external consumers.
    """

    TYPE: ClassVar[str] = "notifier.ReminderTaskRaised"
    TOPIC: ClassVar[str] = NOTIFIER_EVENTS

    task_id: UUID
    chain_id: UUID
    customer_id: UUID
    customer_name: Text
    phone: Text | None
    level: Annotated[int, Field(ge=1)]
    escalated: bool
    """True when an open task moved to the next level rather than a new task opening."""
    overdue_amount: PositiveMoney
    days_overdue: Annotated[int, Field(ge=1)]
    """Of the oldest overdue sale."""
    sales: Annotated[list[TaskSale], Field(min_length=1)]
    created_at: AwareDatetime
    raised_at: AwareDatetime


class ReminderTaskClosed(Event):
    """A reminder task closed: the overdue debt was paid, or staff recorded a call outcome.

    Produced by notifier; consumed by reporting and external consumers.
    """

    TYPE: ClassVar[str] = "notifier.ReminderTaskClosed"
    TOPIC: ClassVar[str] = NOTIFIER_EVENTS

    task_id: UUID
    chain_id: UUID
    customer_id: UUID
    level: Annotated[int, Field(ge=1)]
    reason: TaskClosedReason
    outcome: TaskOutcome | None
    """Set when staff completed the task; null when it closed because the debt was paid."""
    note: Text | None
    closed_at: AwareDatetime
