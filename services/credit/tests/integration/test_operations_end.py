"""Every operation ends: past its deadline, or when one of its messages fails for good, it is
refused as `operation_failed`, voided, undone in loyalty (`VoidBonuses`), and the customer's
parked commands go on in order. Balances stay below 10^13 (`amount_out_of_range`), and a sale id
is a chain's own.

Real PostgreSQL through the consumer's production path (inbox, savepoints, dead letters).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY

from contracts.loyalty.v1 import BonusesApplied
from credit.domain.model import revoke_attempt_id
from credit.service_layer.deadline import expire_operations
from credit.testing import (
    customer_snapshot,
    day,
    one_line_sale,
    record_advance,
    record_payment,
    record_sale,
    revoke,
    sale_line,
    settings_snapshot,
)

CHAIN = uuid.UUID("55555555-5555-4555-8555-555555555555")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def failed(kind: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "operations_failed_total", {"service": "credit", "kind": kind, "reason": reason}
        )
        or 0.0
    )


def on_account(
    customer: Any,
    amount: str,
    *,
    chain: uuid.UUID = CHAIN,
    n: int = 0,
    sale_id: uuid.UUID | None = None,
) -> Any:
    return one_line_sale(chain, customer, settings_snapshot(), amount, at=n, sale_id=sale_id)


def cash(customer: Any, amount: str, *, n: int = 0) -> Any:
    return one_line_sale(CHAIN, customer, settings_snapshot(), amount, at=n, paid_with="cash")


def mismatched(customer: Any) -> Any:
    """A sale whose payments do not add up to its lines: what the gateway never sends, so credit
    can never process it (`InvalidOperation`)."""
    return record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings_snapshot(),
        sold_at=day(0),
        lines=[sale_line(1, "20.00")],
        payments=[("cash", "21.00")],
    )


async def refusals(harness: Any) -> dict[str, tuple[str, str]]:
    return {
        e["operation_id"]: (e["code"], e["detail"])
        for e in await harness.events("credit.OperationRefused")
    }


async def deliver_until_dead_lettered(harness: Any, env: Any) -> None:
    """What Kafka does with a message whose handler keeps failing: deliver it again (the same
    record) until the consumer gives up on it and dead-letters it."""
    record = harness.record(env)
    for _ in range(harness.consumer.max_attempts):
        try:
            await harness.consumer.process_records([record])
            return
        except Exception:
            continue
    raise AssertionError("the consumer never gave up on the message")


async def test_an_operation_past_its_deadline_is_refused_voided_undone_and_the_parked_command_goes_on(  # noqa: E501
    harness,
):
    customer = customer_snapshot()
    key = str(customer.customer_id)
    first = on_account(customer, "50.00")
    second = cash(customer, "20.00", n=1)
    await harness.send(first, key=key)
    await harness.send(second, key=key)  # parked behind the first
    assert len(await harness.events("loyalty.ApplyBonuses")) == 1
    before = failed("sale", "deadline")
    now = datetime.now(UTC)

    # not yet: the deadline has not passed, or this instance has not watched that long
    assert (
        await expire_operations(harness.sf, deadline_seconds=7, watching_since=LONG_AGO, now=now)
        == 0
    )
    assert (
        await expire_operations(
            harness.sf,
            deadline_seconds=7,
            watching_since=now + timedelta(seconds=2),
            now=now + timedelta(seconds=8),
        )
        == 0
    )

    assert (
        await expire_operations(
            harness.sf, deadline_seconds=7, watching_since=LONG_AGO, now=now + timedelta(seconds=8)
        )
        == 1
    )
    code, detail = (await refusals(harness))[str(first.sale_id)]
    assert code == "operation_failed" and "within 7 s" in detail
    [void] = await harness.events("loyalty.VoidBonuses")
    assert void["operation_id"] == str(first.sale_id)
    assert void["customer_id"] == key and void["operation_kind"] == "sale"
    assert failed("sale", "deadline") == before + 1
    # the parked sale went on: it asked loyalty in turn, after the void
    asks = await harness.events("loyalty.ApplyBonuses")
    assert [a["operation_id"] for a in asks] == [str(first.sale_id), str(second.sale_id)]
    outbox = [e.type for e in await harness.outbox()]
    assert outbox.index("loyalty.VoidBonuses") < len(outbox) - 1 - outbox[::-1].index(
        "loyalty.ApplyBonuses"
    )
    assert (await harness.credit(CHAIN, customer.customer_id))["debt"] == "0.00"

    # loyalty's late answer to the failed sale changes nothing; the second completes
    await harness.settle()
    [done] = await harness.events("credit.SaleCompleted")
    assert done["sale_id"] == str(second.sale_id)
    assert done["customer_balances"]["debt"] == "0.00"
    view = await harness.credit(CHAIN, customer.customer_id)
    assert view["debt"] == "0.00" and view["open_sales"] == []
    assert (
        await expire_operations(
            harness.sf, deadline_seconds=7, watching_since=LONG_AGO, now=now + timedelta(seconds=60)
        )
        == 0
    )


async def test_a_revocation_whose_loyalty_leg_fails_leaves_nothing_and_a_later_request_revokes(
    harness,
):
    """A requested revocation waits for loyalty under its request's own operation id. The first
    gets no answer within the deadline (loyalty's record of it ends voided, `VoidBonuses`), the
    second is refused by loyalty: each is refused naming the sale (what the gateway's request
    waits for), leaves nothing in effect, and leaves the sale free for the next request, which
    revokes the discount once."""
    customer = customer_snapshot()
    cid, key = customer.customer_id, str(customer.customer_id)
    settings = settings_snapshot(overdue_discount="offer")
    owed = one_line_sale(CHAIN, customer, settings, "90.00", discount="10.00")
    await harness.send_and_settle(owed, key=key)
    sale = str(owed.sale_id)

    def request(n: int) -> Any:
        return revoke(
            chain_id=CHAIN, customer_id=cid, sale_id=owed.sale_id, settings=settings, at=day(n)
        )

    async def nothing_in_effect() -> None:
        assert await harness.events("credit.DiscountRevoked") == []
        view = await harness.credit(CHAIN, cid)
        assert view["debt"] == "90.00"
        assert [(s["sale_id"], s["amount_owed"]) for s in view["open_sales"]] == [(sale, "90.00")]
        async with harness.sf() as session:
            in_flight = await session.scalar(
                sa.text("SELECT in_flight FROM customers WHERE customer_id = :c"), {"c": cid}
            )
        assert in_flight is None

    # 1. no answer from loyalty within the deadline
    before = failed("revoke_discount", "deadline")
    first = await harness.send(request(31), key=key)
    first_id = revoke_attempt_id(owed.sale_id, first.message_id)
    await harness.loyalty_asked(first_id)
    later = datetime.now(UTC) + timedelta(seconds=8)
    assert (
        await expire_operations(harness.sf, deadline_seconds=7, watching_since=LONG_AGO, now=later)
        == 1
    )
    [refusal] = await harness.events("credit.OperationRefused")
    assert (refusal["operation_id"], refusal["operation_kind"], refusal["code"]) == (
        sale,
        "revoke_discount",
        "operation_failed",
    )
    [void] = await harness.events("loyalty.VoidBonuses")
    assert (void["operation_id"], void["operation_kind"]) == (str(first_id), "revoke_discount")
    assert failed("revoke_discount", "deadline") == before + 1
    await harness.answer_loyalty()  # its late answer changes nothing
    await nothing_in_effect()

    # 2. refused by loyalty
    second = await harness.send(request(32), key=key)
    second_id = revoke_attempt_id(owed.sale_id, second.message_id)
    assert second_id != first_id
    await harness.loyalty_asked(second_id)
    await harness.answer_loyalty(refuse=True)
    refusals_now = await harness.events("credit.OperationRefused")
    assert [(r["operation_id"], r["operation_kind"]) for r in refusals_now] == [
        (sale, "revoke_discount")
    ] * 2
    await nothing_in_effect()

    # 3. the next request revokes the discount, once
    third = await harness.send_and_settle(request(33), key=key)
    third_id = revoke_attempt_id(owed.sale_id, third.message_id)
    assert third_id not in (first_id, second_id)
    await harness.loyalty_asked(third_id)
    [done] = await harness.events("credit.DiscountRevoked")
    assert (done["sale_id"], done["amount"], done["customer_balances"]["debt"]) == (
        sale,
        "10.00",
        "100.00",
    )
    assert (await harness.credit(CHAIN, cid))["debt"] == "100.00"
    await harness.send_and_settle(request(34), key=key)
    assert (await refusals(harness))[sale][0] == "already_revoked"
    assert len(await harness.events("credit.DiscountRevoked")) == 1
    assert (await harness.credit(CHAIN, cid))["debt"] == "100.00"


async def test_an_answer_that_fails_for_good_in_credit_fails_its_operation_and_the_customer_goes_on(  # noqa: E501
    harness,
):
    """Confirming the sale fails for good (a trigger refuses it, as a broken table or a handler
    bug would): the answer is dead-lettered, the sale refused, loyalty asked to undo what it
    applied, and the parked payment goes on."""
    customer = customer_snapshot()
    key = str(customer.customer_id)
    doomed = on_account(customer, "80.00")
    await harness.send_and_settle(on_account(customer, "30.00", n=0), key=key)
    await harness.send(doomed, key=key)
    payment = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings_snapshot(), at=day(1), amount="10.00"
    )
    await harness.send(payment, key=key)  # parked
    async with harness.sf() as session, session.begin():
        await session.execute(
            sa.text(f"""
            CREATE FUNCTION refuse_confirm() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.operation_id = '{doomed.sale_id}' AND NEW.status = 'confirmed' THEN
                RAISE EXCEPTION 'confirming % is broken', NEW.operation_id;
              END IF;
              RETURN NEW;
            END $$""")
        )
        await session.execute(
            sa.text(
                "CREATE TRIGGER refuse_confirm BEFORE UPDATE ON operations FOR EACH ROW "
                "EXECUTE FUNCTION refuse_confirm()"
            )
        )
    before = failed("sale", "dead_letter")
    ask = await harness.loyalty_asked(doomed.sale_id)
    answer = BonusesApplied(
        operation_id=doomed.sale_id,
        operation_kind="sale",
        chain_id=CHAIN,
        customer_id=customer.customer_id,
        spent="0.00",
        accrued="0.00",
        accrued_by_payment=[],
        restored="0.00",
        reversed="0.00",
        reversed_by_payment=[],
        balance_after="0.00",
    )
    harness.answered.add((CHAIN, doomed.sale_id))
    await deliver_until_dead_lettered(harness, harness.envelope(answer, key))

    [letter] = await harness.events("deadletter.DeadLetter")
    assert "is broken" in letter["reason"]
    assert (await refusals(harness))[str(doomed.sale_id)][0] == "operation_failed"
    [void] = await harness.events("loyalty.VoidBonuses")
    assert void["operation_id"] == str(doomed.sale_id)
    assert failed("sale", "dead_letter") == before + 1
    await harness.settle()  # the parked payment asked loyalty after the void: answer it
    [paid] = await harness.events("credit.DebtPaymentRecorded")
    assert paid["payment_id"] == str(payment.payment_id)
    assert paid["customer_balances"]["debt"] == "20.00"  # 30 - 10: nothing of the 80
    assert (await harness.credit(CHAIN, customer.customer_id))["debt"] == "20.00"
    assert ask["operation_id"] == str(doomed.sale_id)


async def test_a_command_that_can_never_be_processed_is_refused_and_the_next_one_completes(
    harness,
):
    customer = customer_snapshot()
    key = str(customer.customer_id)
    broken = mismatched(customer)
    before = failed("sale", "dead_letter")
    await harness.send(broken, key=key)
    [letter] = await harness.events("deadletter.DeadLetter")
    assert "payments do not add up" in letter["reason"]
    assert (await refusals(harness))[str(broken.sale_id)][0] == "operation_failed"
    assert failed("sale", "dead_letter") == before + 1
    # the refusal is what a copy of the command gets: nothing twice
    await harness.send(broken, key=key)
    assert len(await harness.events("credit.OperationRefused")) == 1

    fine = cash(customer, "20.00")
    await harness.send_and_settle(fine, key=key)
    [done] = await harness.events("credit.SaleCompleted")
    assert done["sale_id"] == str(fine.sale_id)


async def test_a_parked_command_that_fails_is_refused_alone_and_the_queue_behind_it_goes_on(
    harness,
):
    customer = customer_snapshot()
    key = str(customer.customer_id)
    first = on_account(customer, "10.00")
    broken = mismatched(customer)
    last = cash(customer, "7.00", n=1)
    for cmd in (first, broken, last):
        await harness.send(cmd, key=key)
    before = failed("sale", "parked_command")
    await harness.settle()
    assert (await refusals(harness))[str(broken.sale_id)][0] == "operation_failed"
    assert failed("sale", "parked_command") == before + 1
    done = {e["sale_id"] for e in await harness.events("credit.SaleCompleted")}
    assert done == {str(first.sale_id), str(last.sale_id)}
    assert await harness.count("parked_commands") == 0


async def test_a_parked_command_that_no_longer_parses_is_still_answered(harness):
    customer = customer_snapshot()
    key = str(customer.customer_id)
    first = on_account(customer, "10.00")
    later = cash(customer, "5.00", n=1)
    await harness.send(first, key=key)
    await harness.send(later, key=key)  # parked, then broken (a schema changed under it)
    async with harness.sf() as session, session.begin():
        await session.execute(
            sa.text(
                "UPDATE parked_commands SET envelope = jsonb_set(envelope, '{payload,lines}', "
                "'[]'::jsonb)"
            )
        )
    await harness.settle()
    assert (await refusals(harness))[str(later.sale_id)][0] == "operation_failed"
    assert await harness.count("parked_commands") == 0


async def test_a_balance_that_would_reach_ten_to_the_thirteen_is_refused_and_records_nothing(
    harness,
):
    customer = customer_snapshot()
    key = str(customer.customer_id)
    for n in range(10):  # ten sales just below 10^12 each: allowed, 9,999,999,999,999.90
        await harness.send_and_settle(on_account(customer, "999999999999.99", n=n), key=key)
    assert (await harness.credit(CHAIN, customer.customer_id))["debt"] == "9999999999999.90"
    over = on_account(customer, "0.10", n=11)
    await harness.send(over, key=key)
    code, detail = (await refusals(harness))[str(over.sale_id)]
    assert code == "amount_out_of_range" and "debt would be 10000000000000.00" in detail
    assert (await harness.credit(CHAIN, customer.customer_id))["debt"] == "9999999999999.90"
    assert await harness.events("loyalty.VoidBonuses") == []
    # just below the bound is fine, and so is paying it all
    await harness.send_and_settle(on_account(customer, "0.09", n=12), key=key)
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings_snapshot(), at=day(13), amount=None
    )
    await harness.send_and_settle(pay, key=key)
    [paid] = await harness.events("credit.DebtPaymentRecorded")
    assert paid["amount"] == "9999999999999.99"
    assert paid["customer_balances"]["debt"] == "0.00"


async def test_the_wedge_reproduction_ends_both_operations_and_the_customer_can_pay(harness):
    """Issue 13's finding 1 at credit: 99,999,999,999,999.99 on account, then 0.01; an advance
    of the same, then 0.01. Each gets a final answer, none waits, and the debt can be paid."""
    customer = customer_snapshot()
    key = str(customer.customer_id)
    huge = on_account(customer, "99999999999999.99")
    small = on_account(customer, "0.01", n=1)
    advance = record_advance(
        chain_id=CHAIN,
        customer=customer,
        settings=settings_snapshot(),
        at=day(2),
        amount="99999999999999.99",
    )
    advance_small = record_advance(
        chain_id=CHAIN, customer=customer, settings=settings_snapshot(), at=day(3), amount="0.01"
    )
    for cmd in (huge, small, advance, advance_small):
        await harness.send_and_settle(cmd, key=key)
    answered = await refusals(harness)
    assert answered[str(huge.sale_id)][0] == "amount_out_of_range"
    assert answered[str(advance.payment_id)][0] == "amount_out_of_range"
    assert {e["sale_id"] for e in await harness.events("credit.SaleCompleted")} == {
        str(small.sale_id)
    }
    [kept] = await harness.events("credit.AdvanceRecorded")
    assert kept["payment_id"] == str(advance_small.payment_id)
    assert kept["customer_balances"] == {
        "debt": "0.00",
        "advance": "0.00",
        "bonus_balance": "0.00",
    }  # it paid the 0.01 of debt
    assert await harness.count("parked_commands") == 0
    async with harness.sf() as session:
        assert (
            await session.scalar(
                sa.text("SELECT count(*) FROM customers WHERE in_flight IS NOT NULL")
            )
            == 0
        )


async def test_the_same_sale_id_in_two_chains_is_two_sales(harness):
    other_chain = uuid.uuid4()
    sale_id = uuid.uuid4()
    ana, bob = customer_snapshot(), customer_snapshot()
    await harness.send(on_account(ana, "12.00", sale_id=sale_id), key=str(ana.customer_id))
    await harness.send_and_settle(
        on_account(bob, "30.00", chain=other_chain, sale_id=sale_id), key=str(bob.customer_id)
    )
    done = await harness.events("credit.SaleCompleted")
    assert sorted((e["chain_id"], e["total"]) for e in done) == sorted(
        [(str(CHAIN), "12.00"), (str(other_chain), "30.00")]
    )
    ana_view = await harness.credit(CHAIN, ana.customer_id)
    bob_view = await harness.credit(other_chain, bob.customer_id)
    assert [(s["sale_id"], s["amount_owed"]) for s in ana_view["open_sales"]] == [
        (str(sale_id), "12.00")
    ]
    assert [(s["sale_id"], s["amount_owed"]) for s in bob_view["open_sales"]] == [
        (str(sale_id), "30.00")
    ]
    # paying one chain's sale leaves the other chain's alone
    pay = record_payment(
        chain_id=CHAIN, customer=ana, settings=settings_snapshot(), at=day(1), amount=None
    )
    await harness.send_and_settle(pay, key=str(ana.customer_id))
    assert (await harness.credit(CHAIN, ana.customer_id))["debt"] == "0.00"
    assert (await harness.credit(other_chain, bob.customer_id))["debt"] == "30.00"


async def test_an_answer_that_waited_for_the_customer_while_its_operation_ended_changes_nothing(
    harness,
):
    """Loyalty's answer locks the customer and ends the pending operation in one statement. An
    operation another transaction ended (here as the deadline job would) while the answer waited
    for the customer's lock is found not pending: nothing is confirmed, nothing published."""
    import asyncio

    customer = customer_snapshot()
    sale = on_account(customer, "40.00")
    await harness.send(sale, key=str(customer.customer_id))
    async with harness.sf() as holder, holder.begin():
        await holder.execute(
            sa.text("SELECT 1 FROM customers WHERE customer_id = :c FOR UPDATE"),
            {"c": customer.customer_id},
        )
        await holder.execute(
            sa.text("UPDATE operations SET status = 'failed' WHERE operation_id = :o"),
            {"o": sale.sale_id},
        )
        answer = asyncio.create_task(harness.answer_loyalty())
        await asyncio.sleep(0.5)
        assert not answer.done()  # it waits for the customer
    assert await asyncio.wait_for(answer, 10) == 1
    assert await harness.events("credit.SaleCompleted") == []
    async with harness.sf() as session:
        status = await session.scalar(
            sa.text("SELECT status FROM operations WHERE operation_id = :o"), {"o": sale.sale_id}
        )
    assert status == "failed"
