"""Operations that end without loyalty's effect: voided by credit (`VoidBonuses`), failing here
for good (a dead-lettered `ApplyBonuses` is answered `operation_failed`), or out of range; and a
sale id that two chains use. Real PostgreSQL through servicekit's consumer."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import sqlalchemy as sa
from prometheus_client import REGISTRY

from contracts.credit.v1 import ApplyBonuses, VoidBonuses
from contracts.enums import BonusOperationKind
from contracts.loyalty.v1 import (
    BonusesApplied,
    BonusesRefused,
    BonusesVoided,
    BonusMovementRecorded,
)

if TYPE_CHECKING:
    from conftest import Harness

D = Decimal


def void(loyalty: Harness, command: ApplyBonuses) -> VoidBonuses:
    return VoidBonuses(
        operation_id=command.operation_id,
        operation_kind=command.operation_kind,
        chain_id=command.chain_id,
        customer_id=command.customer_id,
        reason="test",
        requested_at=loyalty.clock.now,
    )


async def lots(loyalty: Harness) -> list[tuple[str, str]]:
    body = await loyalty.bonus()
    return [(lot["amount"], lot["remaining"]) for lot in body["lots"]]


async def test_voiding_an_applied_operation_gives_back_its_spend_takes_back_its_accrual(
    loyalty: Harness,
) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "300.00")]))  # 30.00 bonus
    before = await loyalty.bonus()
    failing = loyalty.apply(spend="12.00", cash=[(uuid4(), "50.00")])
    await loyalty.feed(failing)
    assert (await loyalty.bonus())["balance"] == "23.00"

    await loyalty.feed(void(loyalty, failing))

    after = await loyalty.bonus()
    assert after["balance"] == before["balance"] == "30.00"
    # the accrual's lot is empty, what was spent came back as a lot of its own
    assert sorted(await lots(loyalty)) == sorted([("30.00", "18.00"), ("12.00", "12.00")])
    (voided,) = await loyalty.outbox(BonusesVoided.TYPE)
    published = [
        m
        for m in await loyalty.outbox(BonusMovementRecorded.TYPE)
        if m.operation_id == failing.operation_id
    ]
    assert sorted(voided.movement_ids) == sorted(m.movement_id for m in published)
    assert {m.kind.value for m in published} == {"spent", "accrued"}
    assert voided.balance_after == D("30.00")
    # the undo itself is not published: reporting drops the voided movements instead
    kinds = [m.kind.value for m in await loyalty.outbox(BonusMovementRecorded.TYPE)]
    assert "void_taken" not in kinds and "void_given" not in kinds
    # a copy of the command arriving later is refused, and its payment no longer counts
    await loyalty.feed(failing)
    refused = await loyalty.outbox(BonusesRefused.TYPE)
    assert [r.code for r in refused] == ["operation_failed"]
    assert (await loyalty.bonus())["balance"] == "30.00"
    await loyalty.feed(loyalty.cancel(failing.accrual_bases[0].payment_id))
    assert (await loyalty.bonus())["balance"] == "30.00"


async def test_voiding_an_operation_loyalty_never_saw_refuses_it_when_it_comes(
    loyalty: Harness,
) -> None:
    late = loyalty.apply(cash=[(uuid4(), "80.00")])
    await loyalty.feed(void(loyalty, late))
    (voided,) = await loyalty.outbox(BonusesVoided.TYPE)
    assert voided.movement_ids == []
    await loyalty.feed(late)  # a re-driven dead letter, say
    (refused,) = await loyalty.outbox(BonusesRefused.TYPE)
    assert refused.code == "operation_failed"
    assert await loyalty.count("bonus_movements") == 0
    await loyalty.feed(void(loyalty, late))  # voiding twice changes nothing
    assert len(await loyalty.outbox(BonusesVoided.TYPE)) == 1


async def test_a_voided_revocation_attempt_leaves_the_next_one_answered_with_the_balance(
    loyalty: Harness,
) -> None:
    """Credit asks about a requested discount revocation only for the balance its answer
    shows (`operation_kind` revoke_discount, nothing to apply), under the id of the request's
    attempt. An attempt credit gave up is voided and a copy of it refused; the next request's
    attempt, another id, is answered with the balance (here after a cancellation)."""
    cash = uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash, "200.00")]))
    await loyalty.feed(loyalty.apply(spend="15.00"))
    await loyalty.feed(loyalty.cancel(cash))
    movements = await loyalty.count("bonus_movements")

    def attempt() -> ApplyBonuses:
        ask = loyalty.apply(kind=BonusOperationKind.REVOKE_DISCOUNT, operation_id=uuid4())
        return ask.model_copy(update={"sale_id": None})

    given_up = attempt()
    await loyalty.feed(given_up)
    await loyalty.feed(void(loyalty, given_up))
    await loyalty.feed(given_up)  # a copy after the void: refused
    first, copy = (
        await loyalty.outbox(BonusesApplied.TYPE),
        await loyalty.outbox(BonusesRefused.TYPE),
    )
    assert first[-1].operation_id == given_up.operation_id
    assert [(r.operation_id, r.code) for r in copy] == [(given_up.operation_id, "operation_failed")]
    (voided,) = await loyalty.outbox(BonusesVoided.TYPE)
    assert voided.movement_ids == [] and voided.balance_after == D("-15.00")

    next_one = attempt()
    await loyalty.feed(next_one)
    answer = (await loyalty.outbox(BonusesApplied.TYPE))[-1]
    assert (answer.operation_id, answer.operation_kind) == (
        next_one.operation_id,
        BonusOperationKind.REVOKE_DISCOUNT,
    )
    assert (answer.spent, answer.accrued, answer.restored, answer.reversed) == (D(0),) * 4
    assert answer.balance_after == D("-15.00")
    assert await loyalty.count("bonus_movements") == movements
    assert (await loyalty.bonus())["balance"] == "-15.00"


async def test_voiding_a_return_restores_the_history_the_next_return_needs(
    loyalty: Harness,
) -> None:
    sale_id, paid = uuid4(), uuid4()
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))  # 10.00
    await loyalty.feed(loyalty.apply(sale_id=sale_id, spend="10.00", cash=[(paid, "90.00")]))
    assert (await loyalty.bonus())["balance"] == "9.00"
    first_return = loyalty.return_of(sale_id, restore_up_to="10.00", reverse=[(paid, "90.00")])
    await loyalty.feed(first_return)
    assert (await loyalty.bonus())["balance"] == "10.00"  # +10 restored, -9 reversed
    await loyalty.feed(void(loyalty, first_return))
    assert (await loyalty.bonus())["balance"] == "9.00"

    again = loyalty.return_of(sale_id, restore_up_to="10.00", reverse=[(paid, "90.00")])
    await loyalty.feed(again)
    applied = (await loyalty.outbox(BonusesApplied.TYPE))[-1]
    assert (applied.restored, applied.reversed) == (D("10.00"), D("9.00"))
    assert (await loyalty.bonus())["balance"] == "10.00"


async def test_an_apply_bonuses_that_fails_for_good_is_answered_operation_failed(
    loyalty: Harness,
) -> None:
    """The bonus ledger refuses this operation's rows (a trigger, as a broken table or a bug
    would): the command is dead-lettered and credit gets a refusal at once instead of
    waiting for its deadline; the next operation of the customer applies."""
    doomed = loyalty.apply(cash=[(uuid4(), "40.00")])
    async with loyalty.session_factory() as session, session.begin():
        await session.execute(
            sa.text(f"""
            CREATE FUNCTION refuse_movement() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.operation_id = '{doomed.operation_id}' THEN
                RAISE EXCEPTION 'the bonus ledger is broken';
              END IF;
              RETURN NEW;
            END $$""")
        )
        await session.execute(
            sa.text(
                "CREATE TRIGGER refuse_movement BEFORE INSERT ON bonus_movements FOR EACH ROW "
                "EXECUTE FUNCTION refuse_movement()"
            )
        )
    labels = {"service": "loyalty", "kind": "sale", "reason": "dead_letter"}
    before = REGISTRY.get_sample_value("operations_failed_total", labels) or 0.0
    env = loyalty.envelope(doomed)
    for _ in range(loyalty.consumer.max_attempts):
        try:
            await loyalty.feed(env)
            break
        except Exception:
            continue

    (refused,) = await loyalty.outbox(BonusesRefused.TYPE)
    assert (refused.operation_id, refused.code) == (doomed.operation_id, "operation_failed")
    assert "broken" in refused.detail
    assert REGISTRY.get_sample_value("operations_failed_total", labels) == before + 1
    assert await loyalty.count("bonus_movements") == 0
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "20.00")]))
    (applied,) = await loyalty.outbox(BonusesApplied.TYPE)
    assert applied.balance_after == D("2.00")


async def test_an_accrual_that_takes_the_balance_to_ten_to_the_thirteen_is_refused(
    loyalty: Harness,
) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "99999999999999.90")]))  # 9999999999999.99
    before = await loyalty.bonus()
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "0.10")]))  # +0.01: the bound itself
    (refused,) = await loyalty.outbox(BonusesRefused.TYPE)
    assert refused.code == "amount_out_of_range"
    assert await loyalty.bonus() == before
    await loyalty.feed(loyalty.apply(spend="1.00", cash=[(uuid4(), "0.10")]))  # spends first
    assert (await loyalty.bonus())["balance"] == "9999999999999.00"


async def test_the_same_operation_id_in_two_chains_is_two_operations(loyalty: Harness) -> None:
    sale_id = uuid4()
    mine = loyalty.apply(sale_id=sale_id, cash=[(uuid4(), "10.00")])
    other_chain, other_customer = uuid4(), uuid4()
    theirs = mine.model_copy(
        update={
            "chain_id": other_chain,
            "customer_id": other_customer,
            "accrual_bases": [
                b.model_copy(update={"base_amount": D("70.00")}) for b in mine.accrual_bases
            ],
        }
    )
    await loyalty.feed(mine)
    await loyalty.feed(theirs, key=other_customer)
    answers: list[Any] = await loyalty.outbox(BonusesApplied.TYPE)
    assert sorted((a.chain_id, a.balance_after) for a in answers) == sorted(
        [(loyalty.chain_id, D("1.00")), (other_chain, D("7.00"))]
    )
