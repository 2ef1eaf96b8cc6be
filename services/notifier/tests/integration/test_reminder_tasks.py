"""Reminder tasks from real credit events through the real consumer into PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import DebtPaymentKind, MoneyMethod, OverdueDiscountPolicy
from contracts.gateway import v1 as gateway
from notifier.adapters import tables as t
from notifier.service_layer.jobs import scan_once
from notifier.testing import T0, chain_settings, sale_overdue, vip_customer
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory
from servicekit.testing import record_of

D = Decimal

pytestmark = pytest.mark.integration

#: the `api` fixture (conftest.py): `async with api() as http`
Api = Callable[[], httpx.AsyncClient]
#: the `open_tasks` fixture (conftest.py): `await open_tasks(chain_id)`
OpenTasks = Callable[[uuid.UUID], Awaitable[list[dict[str, Any]]]]


class Story:
    """One chain and one customer with two sales, told as credit would tell it."""

    def __init__(self, consumer: Consumer, policy: OverdueDiscountPolicy) -> None:
        self.consumer = consumer
        self.policy = policy
        self.chain = uuid.uuid4()
        self.customer = uuid.uuid4()
        self.sale_a = uuid.uuid4()
        self.sale_b = uuid.uuid4()

    async def feed(self, *messages: Message) -> None:
        await self.consumer.process_records([record_of(m, key=self.customer) for m in messages])

    async def register(self) -> None:
        await self.feed(
            gateway.ChainRegistered(
                chain_id=self.chain,
                name="Kids",
                settings=chain_settings(self.policy),
                registered_at=T0,
            ),
            vip_customer(self.chain, self.customer),
        )

    async def sale_a_overdue(self) -> None:
        """The customer registered, and sale A (30.00 owed) overdue since 31 January."""
        await self.register()
        await self.feed(self.overdue(self.sale_a, "30.00", date(2026, 1, 31)))

    def overdue(self, sale_id: uuid.UUID, owed: str, due: date) -> credit.SaleOverdue:
        return sale_overdue(self.chain, self.customer, sale_id, owed, due=due, discount="10.00")

    def settled(self, sale_id: uuid.UUID, left: str) -> credit.SaleSettled:
        return credit.SaleSettled(
            sale_id=sale_id,
            chain_id=self.chain,
            customer_id=self.customer,
            was_overdue=True,
            customer_overdue_amount=D(left),
            settled_at=T0 + timedelta(days=32),
        )

    def payment(
        self, changes: list[tuple[uuid.UUID, str]], debt: str
    ) -> credit.DebtPaymentRecorded:
        return credit.DebtPaymentRecorded(
            payment_id=uuid.uuid4(),
            chain_id=self.chain,
            customer_id=self.customer,
            store_id=uuid.uuid4(),
            terminal_id=uuid.uuid4(),
            kind=DebtPaymentKind.TAKE_MONEY,
            method=MoneyMethod.CASH,
            amount=D("5.00"),
            allocated=[],
            advance_added=D("0.00"),
            bonus_accrued=D("0.00"),
            occurred_at=T0 + timedelta(days=32),
            customer_balances=credit.CustomerBalances(
                debt=D(debt), advance=D("0.00"), bonus_balance=D("0.00")
            ),
            lines_changed=[
                credit.LineOwedChange(sale_id=s, line_no=1, owed_after=D(o)) for s, o in changes
            ],
        )


async def tasks_of(sf: SessionFactory, customer: uuid.UUID) -> list[Any]:
    async with sf() as session:
        return (
            await session.execute(
                sa.select(t.tasks)
                .where(t.tasks.c.customer_id == customer)
                .order_by(t.tasks.c.created_at)
            )
        ).all()


async def the_task_was_closed_as_paid(sf: SessionFactory, customer: uuid.UUID) -> None:
    """The customer's one task is done, closed because the overdue debt was paid."""
    [row] = await tasks_of(sf, customer)
    assert (row.status, row.closed_reason) == ("done", "paid")


async def events(sf: SessionFactory, kind: str) -> list[dict[str, Any]]:
    async with sf() as session:
        rows = (
            await session.execute(
                sa.text("SELECT value FROM outbox WHERE type = :t ORDER BY id"), {"t": kind}
            )
        ).scalars()
        return [json.loads(v)["payload"] for v in rows]


async def test_a_redelivered_sale_overdue_never_makes_a_second_task(
    consumer: Consumer, sf: SessionFactory
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.KEEP)
    await story.register()
    overdue = story.overdue(story.sale_a, "30.00", date(2026, 1, 31))
    record = record_of(overdue, key=story.customer)
    await consumer.process_records([record])
    await consumer.process_records([record])  # the same message again (a rewound partition)
    await story.feed(overdue)  # the same fact under a new message id (credit re-published)
    rows = await tasks_of(sf, story.customer)
    assert [(r.level, r.status) for r in rows] == [(1, "open")]
    raised = await events(sf, "notifier.ReminderTaskRaised")
    assert len(raised) == 1
    assert raised[0]["phone"] == "+40700000000"
    assert raised[0]["overdue_amount"] == "30.00"


async def test_settling_the_overdue_sale_closes_the_task_as_paid(
    consumer: Consumer, sf: SessionFactory
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.KEEP)
    await story.sale_a_overdue()
    await story.feed(story.settled(story.sale_a, "0.00"))
    await the_task_was_closed_as_paid(sf, story.customer)
    [closed] = await events(sf, "notifier.ReminderTaskClosed")
    assert (closed["reason"], closed["outcome"]) == ("paid", None)


async def test_paying_only_part_of_the_overdue_debt_keeps_the_task_open_until_all_is_paid(
    consumer: Consumer, sf: SessionFactory, open_tasks: OpenTasks
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.KEEP)
    await story.register()
    await story.feed(
        story.overdue(story.sale_a, "30.00", date(2026, 1, 31)),
        story.overdue(story.sale_b, "50.00", date(2026, 2, 5)),
    )
    await story.feed(story.payment([(story.sale_a, "0.00")], "50.00"))
    [row] = await tasks_of(sf, story.customer)
    assert row.status == "open"
    [task] = await open_tasks(story.chain)
    assert task["overdue_amount"] == "50.00"
    assert [s["sale_id"] for s in task["sales"]] == [str(story.sale_b)]
    await story.feed(story.payment([(story.sale_b, "0.00")], "0.00"))
    await the_task_was_closed_as_paid(sf, story.customer)


async def test_a_line_change_replaces_the_one_amount_a_sale_without_lines_is_followed_as(
    consumer: Consumer, sf: SessionFactory, open_tasks: OpenTasks
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.KEEP)
    await story.register()
    # no lines: its 30.00 stands on line 0
    await story.feed(
        sale_overdue(story.chain, story.customer, story.sale_a, "30.00", dress_line=False)
    )
    await story.feed(story.payment([(story.sale_a, "10.00")], "10.00"))
    async with sf() as session:
        lines = (
            await session.execute(
                sa.select(t.overdue_lines.c.line_no, t.overdue_lines.c.owed)
                .where(t.overdue_lines.c.sale_id == story.sale_a)
                .order_by(t.overdue_lines.c.line_no)
            )
        ).all()
    assert [tuple(r) for r in lines] == [(1, D("10.00"))]
    [task] = await open_tasks(story.chain)
    assert task["overdue_amount"] == "10.00"
    await story.feed(story.payment([(story.sale_a, "0.00")], "0.00"))
    await the_task_was_closed_as_paid(sf, story.customer)


async def test_reminder_is_re_raised_every_repeat_period_while_overdue(
    consumer: Consumer, sf: SessionFactory, api: Api
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.KEEP)
    await story.sale_a_overdue()
    [first] = await tasks_of(sf, story.customer)
    assert await scan_once(sf, now=first.raised_at + timedelta(days=6)) == 0
    assert await scan_once(sf, now=first.raised_at + timedelta(days=7)) == 1
    [row] = await tasks_of(sf, story.customer)
    assert (row.task_id, row.level, row.status) == (first.task_id, 2, "open")
    # staff call and record the outcome; a week later the customer still owes: level 3
    async with api() as http:
        done = await http.post(
            f"/internal/v1/chains/{story.chain}/tasks/{row.task_id}/complete",
            json={"outcome": "promised", "note": "pays Friday"},
        )
        assert done.status_code == 200
        assert (done.json()["closed_reason"], done.json()["level"]) == ("completed", 2)
        other = await http.post(
            f"/internal/v1/chains/{uuid.uuid4()}/tasks/{row.task_id}/complete",
            json={"outcome": "other", "note": ""},
        )
        assert (other.status_code, other.json()["code"]) == (404, "not_found")
    assert await scan_once(sf, now=row.raised_at + timedelta(days=3)) == 0
    assert await scan_once(sf, now=row.raised_at + timedelta(days=7)) == 1
    rows = await tasks_of(sf, story.customer)
    assert [(r.level, r.status, r.closed_reason) for r in rows] == [
        (2, "done", "completed"),
        (3, "open", None),
    ]
    async with api() as http:
        done_list = (await http.get(f"/internal/v1/chains/{story.chain}/tasks?status=done")).json()
        assert [i["level"] for i in done_list["items"]] == [2]
        assert done_list["next"] is None


async def test_offer_lists_a_revoke_action_until_the_discount_is_revoked(
    consumer: Consumer, api: Api
) -> None:
    story = Story(consumer, OverdueDiscountPolicy.OFFER)
    await story.sale_a_overdue()
    url = f"/internal/v1/chains/{story.chain}/tasks"
    async with api() as http:
        [task] = (await http.get(url)).json()["items"]
        assert task["actions"] == [
            {
                "action": "revoke_discount",
                "sale_id": str(story.sale_a),
                "href": f"/v1/sales/{story.sale_a}/revoke-discount",
            }
        ]
        assert task["customer_name"] == "Ana Pop" and task["level"] == 1
        await story.feed(
            credit.DiscountRevoked(
                sale_id=story.sale_a,
                chain_id=story.chain,
                customer_id=story.customer,
                amount=D("10.00"),
                lines=[credit.RevokedDiscountLine(line_no=1, amount=D("10"))],
                trigger="requested",
                revoked_at=T0 + timedelta(days=31),
                customer_balances=credit.CustomerBalances(
                    debt=D("40.00"), advance=D("0.00"), bonus_balance=D("0.00")
                ),
                lines_changed=[
                    credit.LineOwedChange(sale_id=story.sale_a, line_no=1, owed_after=D("40.00"))
                ],
            )
        )
        [task] = (await http.get(url)).json()["items"]
        assert task["actions"] == []
        assert task["overdue_amount"] == "40.00"


async def test_tasks_page_with_a_cursor(consumer: Consumer, api: Api) -> None:
    chain = None
    for _ in range(3):
        story = Story(consumer, OverdueDiscountPolicy.KEEP)
        if chain is not None:
            story.chain = chain
        chain = story.chain
        await story.register()
        await story.feed(story.overdue(story.sale_a, "30.00", date(2026, 1, 31)))
    seen: list[str] = []
    cursor = None
    async with api() as http:
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            body = (await http.get(f"/internal/v1/chains/{chain}/tasks", params=params)).json()
            seen.extend(i["task_id"] for i in body["items"])
            cursor = body["next"]
            if cursor is None:
                break
    assert len(seen) == len(set(seen)) == 3


async def test_a_forged_tasks_cursor_is_a_422_never_a_500(api: Api) -> None:
    # not base64; a JSON list; a position with a NUL (PostgreSQL refuses it); no time in it
    forged = ("not base64 !", "WzEsMl0", "eyJpZCI6ImFcdTAwMDAiLCJ0IjoieCJ9", "eyJpZCI6IjEifQ")
    async with api() as http:
        for status in ("open", "done"):
            for cursor in forged:
                resp = await http.get(
                    f"/internal/v1/chains/{uuid.uuid4()}/tasks",
                    params={"status": status, "cursor": cursor},
                )
                assert resp.status_code == 422, (status, cursor, resp.text)
                assert resp.json()["errors"] == [{"field": "cursor", "message": "invalid cursor"}]


async def test_the_same_sale_id_overdue_in_two_chains_makes_a_task_in_each(
    consumer: Consumer, sf: SessionFactory
) -> None:
    """A POS-chosen sale id is unique within its chain only: both chains' overdue sales are
    followed, and paying one chain's closes that chain's task alone."""
    first = Story(consumer, OverdueDiscountPolicy.KEEP)
    second = Story(consumer, OverdueDiscountPolicy.KEEP)
    second.sale_a = first.sale_a
    for story in (first, second):
        await story.register()
    await first.feed(first.overdue(first.sale_a, "30.00", date(2026, 1, 31)))
    await second.feed(second.overdue(second.sale_a, "70.00", date(2026, 1, 31)))
    raised = await events(sf, "notifier.ReminderTaskRaised")
    assert sorted(r["overdue_amount"] for r in raised) == ["30.00", "70.00"]

    await first.feed(first.payment([(first.sale_a, "0.00")], "0.00"))
    await the_task_was_closed_as_paid(sf, first.customer)
    [theirs] = await tasks_of(sf, second.customer)
    assert theirs.status == "open"
    assert [s["amount_owed"] for s in theirs.sales] == ["70.00"]


async def test_a_completed_task_names_the_staff_user_who_completed_it(
    consumer: Consumer, api: Api
) -> None:
    by_user = Story(consumer, OverdueDiscountPolicy.KEEP)
    await by_user.register()
    await by_user.feed(by_user.overdue(by_user.sale_a, "30.00", date(2026, 1, 31)))
    by_admin = Story(consumer, OverdueDiscountPolicy.KEEP)
    by_admin.chain = by_user.chain
    await by_admin.register()
    await by_admin.feed(by_admin.overdue(by_admin.sale_a, "20.00", date(2026, 1, 31)))
    url = f"/internal/v1/chains/{by_user.chain}/tasks"
    user_id = str(uuid.uuid4())
    async with api() as http:
        open_ = {t["customer_id"]: t for t in (await http.get(url)).json()["items"]}
        assert all(t["completed_by"] is None for t in open_.values())
        done = await http.post(
            f"{url}/{open_[str(by_user.customer)]['task_id']}/complete",
            json={
                "outcome": "promised",
                "note": "pays Friday",
                "completed_by": {"user_id": user_id, "name": "Ioana <Rusu>"},
            },
        )
        assert done.status_code == 200, done.text
        assert done.json()["completed_by"] == {"user_id": user_id, "name": "Ioana <Rusu>"}
        admin_done = await http.post(
            f"{url}/{open_[str(by_admin.customer)]['task_id']}/complete",
            json={"outcome": "no_answer", "note": None, "completed_by": None},
        )
        assert admin_done.json()["completed_by"] is None
        # completing it again changes nothing, not even who did it
        again = await http.post(
            f"{url}/{open_[str(by_user.customer)]['task_id']}/complete",
            json={"outcome": "other", "note": "x", "completed_by": None},
        )
        assert again.json()["completed_by"] == {"user_id": user_id, "name": "Ioana <Rusu>"}
        listed = {
            t["customer_id"]: t["completed_by"]
            for t in (await http.get(url, params={"status": "done"})).json()["items"]
        }
        assert listed == {
            str(by_user.customer): {"user_id": user_id, "name": "Ioana <Rusu>"},
            str(by_admin.customer): None,
        }
