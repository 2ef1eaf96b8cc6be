"""What the ledger decides for each command, as the event to publish and loyalty's part.

One function per command: it runs the ledger rule (``credit.domain.model.Ledger``) and builds
the outcome event (its bonus figures still zero: loyalty fills them in when it confirms) and,
when the customer is known, the ``ApplyBonuses`` that asks loyalty for its part. Nothing here
reads or writes the database; ``handlers.execute`` loads the ledger and records the decision.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from contracts.base import Message
from contracts.credit.v1 import (
    AdvanceRecorded,
    ApplyBonuses,
    BonusBase,
    CustomerBalances,
    DebtPaymentRecorded,
    DiscountRevoked,
    RefundRecorded,
    ReturnedLine,
    ReturnRecorded,
    RevokedDiscountLine,
    SaleCompleted,
    SaleLineOutcome,
    SalePaymentOutcome,
)
from contracts.enums import BonusOperationKind, DebtPaymentKind, PaymentMethod
from contracts.gateway.v1 import (
    ChainSettingsSnapshot,
    CustomerSnapshot,
    RecordAdvance,
    RecordDebtPayment,
    RecordRefund,
    RecordReturn,
    RecordSale,
    RevokeDiscount,
)
from credit.domain.errors import Refusal
from credit.domain.model import (
    AllocationRequest,
    Ledger,
    Line,
    Method,
    Mode,
    MoneyInOutcome,
    Outcome,
    Payment,
    ReturnRequest,
    Sale,
    SaleOutcome,
    due_date_for,
)
from credit.domain.model import (
    BonusBase as DomainBonusBase,
)
from credit.service_layer import outcomes as oc

Command = (
    RecordSale | RecordDebtPayment | RecordAdvance | RecordRefund | RecordReturn | RevokeDiscount
)


def local_date(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Decision:
    """The ledger's answer to one command: what to record and what to publish."""

    outcome: Outcome
    event: Message
    bonus: ApplyBonuses | None = None  # loyalty's part; None: confirmed at once
    sale: Sale | None = None  # a new sale to store


@dataclass(frozen=True)
class Step:
    """One command against the customer's ledger, and what every decision needs of it."""

    cmd: Command
    ledger: Ledger
    operation_id: uuid.UUID  # the command's, or a requested revocation's attempt id
    customer_id: uuid.UUID | None
    cached_bonus: Decimal  # the bonus balance shown until loyalty's answer replaces it

    @property
    def settings(self) -> ChainSettingsSnapshot:
        return self.cmd.settings

    @property
    def m(self) -> oc.Money:
        return oc.Money(self.settings.minor_units)

    def balances(self, out: Outcome) -> CustomerBalances:
        return oc.balances(out.debt_after, out.advance_after, self.cached_bonus, self.m)

    def bonuses(
        self,
        kind: BonusOperationKind,
        customer: CustomerSnapshot | uuid.UUID,
        *,
        store_id: uuid.UUID,
        sale_id: uuid.UUID | None,
        at: datetime,
        out: Outcome,
    ) -> ApplyBonuses:
        """Loyalty's part of the operation. `customer`: the command's snapshot, or only the
        customer's id for a command that carries none (a revocation: nothing accrues)."""
        s, m = self.settings, self.m
        if isinstance(customer, uuid.UUID):
            customer_id, accrual = customer, False
        else:
            customer_id, accrual = customer.customer_id, customer.bonus_accrual
        return ApplyBonuses(
            operation_id=self.operation_id,
            operation_kind=kind,
            chain_id=self.cmd.chain_id,
            customer_id=customer_id,
            store_id=store_id,
            sale_id=sale_id,
            occurred_at=at,
            bonus_accrual=accrual,
            bonus_rate_percent=s.bonus_rate_percent,
            bonus_expiry_days=s.bonus_expiry_days,
            minor_units=s.minor_units,
            spend=m(out.bonus_spend),
            accrual_bases=bases(out.accrual_bases, m),
            restore_up_to=m(out.restore_up_to),
            reverse_bases=bases(out.reverse_bases, m),
        )


def bases(items: list[DomainBonusBase], m: oc.Money) -> list[BonusBase]:
    return [
        BonusBase(
            payment_id=b.payment_id, method=PaymentMethod(b.method.value), base_amount=m(b.amount)
        )
        for b in items
    ]


def decide(step: Step) -> Decision:
    cmd = step.cmd
    if isinstance(cmd, RecordSale):
        return decide_sale(step, cmd)
    if isinstance(cmd, RecordDebtPayment):
        return decide_debt_payment(step, cmd)
    if isinstance(cmd, RecordAdvance):
        return decide_advance(step, cmd)
    if isinstance(cmd, RecordRefund):
        return decide_refund(step, cmd)
    if isinstance(cmd, RecordReturn):
        return decide_return(step, cmd)
    return decide_revoke(step, cmd)


def new_sale(cmd: RecordSale) -> Sale:
    settings, customer = cmd.settings, cmd.customer
    delay = settings.max_payment_delay_days
    if customer is not None and customer.max_payment_delay_days is not None:
        delay = customer.max_payment_delay_days
    day = local_date(cmd.sold_at, settings.timezone)
    return Sale(
        sale_id=cmd.sale_id,
        store_id=cmd.store_id,
        terminal_id=cmd.terminal_id,
        sold_at=cmd.sold_at,
        local_date=day,
        due_date=due_date_for(day, delay),
        lines=tuple(  # the command's line, as sold
            Line(
                x.line_no, x.name, x.quantity, x.unit_price, x.discount, x.amount, x.sku, x.barcode
            )
            for x in cmd.lines
        ),
        payments=tuple(
            Payment(p.payment_id, Method(p.method.value), p.amount) for p in cmd.payments
        ),
    )


def decide_sale(step: Step, cmd: RecordSale) -> Decision:
    customer, settings = cmd.customer, cmd.settings
    sale = new_sale(cmd)
    out = step.ledger.record_sale(
        sale=sale,
        customer_known=customer is not None,
        vip=customer.vip if customer else False,
        credit_limit=customer.credit_limit if customer else None,
        block_credit_when_overdue=settings.block_credit_when_overdue,
        change=cmd.change,
        change_to_advance=cmd.change_to_advance,
        today=sale.local_date,
    )
    assert out.sale is not None
    event = sale_completed(step, cmd, out)
    bonus = None
    if customer is not None:
        bonus = step.bonuses(
            BonusOperationKind.SALE,
            customer,
            store_id=cmd.store_id,
            sale_id=cmd.sale_id,
            at=cmd.sold_at,
            out=out,
        )
    return Decision(out, event, bonus, sale=out.sale)


def sale_completed(step: Step, cmd: RecordSale, out: SaleOutcome) -> SaleCompleted:
    """The sale's outcome event: what it came to, how it was paid, what each line owes now
    (bonus figures zero: loyalty's to fill)."""
    settings, m = cmd.settings, step.m
    return SaleCompleted(
        sale_id=cmd.sale_id,
        chain_id=cmd.chain_id,
        store_id=cmd.store_id,
        terminal_id=cmd.terminal_id,
        customer_id=step.customer_id,
        card_number=cmd.card_number,
        credit_mode=settings.credit_mode,
        sold_at=cmd.sold_at,
        total=m(out.total),
        paid=m(out.paid),
        on_account=m(out.on_account),
        advance_applied=m(out.advance_applied),
        change=m(out.change),
        change_to_advance=m(out.change_to_advance),
        change_allocated=oc.allocations(out.change_allocated, settings.credit_mode, m),
        advance_added=m(out.advance_added),
        due_date=out.due_date,
        bonus_accrued=m(Decimal(0)),
        bonus_spent=m(out.bonus_spend),
        payments=[
            SalePaymentOutcome(
                payment_id=p.payment_id,
                method=p.method,
                amount=p.amount,
                bonus_accrued=m(Decimal(0)),
            )
            for p in cmd.payments
            if p.method is not PaymentMethod.ON_ACCOUNT
        ],
        lines=[
            # the command's line as sold, with what is owed on it now
            SaleLineOutcome(**vars(x), owed=m(out.line_owed.get(n, Decimal(0))))
            for n, x in sorted({x.line_no: x for x in cmd.lines}.items())
        ],
        customer_balances=step.balances(out) if step.customer_id else None,
        # the lines it changed but those of this sale that owe nothing (left out before they
        # are built)
        lines_changed=oc.lines_changed(
            {
                key: owed
                for key, owed in out.lines_changed.items()
                if key[0] != cmd.sale_id or m(owed) > 0
            },
            m,
        ),
    )


def decide_debt_payment(step: Step, cmd: RecordDebtPayment) -> Decision:
    method, mode = Method(cmd.method.value), Mode(cmd.settings.credit_mode.value)
    pay: MoneyInOutcome
    if cmd.kind is DebtPaymentKind.PAY_DEBT:
        pay = step.ledger.pay_debt(
            payment_id=cmd.payment_id,
            method=method,
            at=cmd.occurred_at,
            dated=cmd.occurred_at_given,
        )
    else:
        assert cmd.amount is not None
        pay = step.ledger.take_money(
            payment_id=cmd.payment_id,
            amount=cmd.amount,
            method=method,
            at=cmd.occurred_at,
            mode=mode,
            dated=cmd.occurred_at_given,
            allocations=[
                AllocationRequest(a.sale_id, a.line_no, a.amount) for a in cmd.allocations
            ],
        )
    event = DebtPaymentRecorded(kind=cmd.kind, **_money_in_fields(step, cmd, pay))
    return Decision(pay, event, _money_in_bonuses(step, cmd, BonusOperationKind.DEBT_PAYMENT, pay))


def decide_advance(step: Step, cmd: RecordAdvance) -> Decision:
    adv = step.ledger.record_advance(
        payment_id=cmd.payment_id,
        amount=cmd.amount,
        method=Method(cmd.method.value),
        at=cmd.occurred_at,
        dated=cmd.occurred_at_given,
    )
    event = AdvanceRecorded(
        applied_to_debt=step.m(adv.applied_to_debt), **_money_in_fields(step, cmd, adv)
    )
    return Decision(adv, event, _money_in_bonuses(step, cmd, BonusOperationKind.ADVANCE, adv))


def _money_in_fields(
    step: Step, cmd: RecordDebtPayment | RecordAdvance, out: MoneyInOutcome
) -> dict[str, Any]:
    """What the events of money taken at the till (a debt payment, an advance) both say: the
    money, the debt it paid and the advance it left (bonus still zero: loyalty's to fill)."""
    m = step.m
    return {
        "payment_id": cmd.payment_id,
        "chain_id": cmd.chain_id,
        "customer_id": cmd.customer.customer_id,
        "store_id": cmd.store_id,
        "terminal_id": cmd.terminal_id,
        "method": cmd.method,
        "amount": m(out.amount),
        "allocated": oc.allocations(out.allocated, cmd.settings.credit_mode, m),
        "advance_added": m(out.advance_added),
        "bonus_accrued": m(Decimal(0)),
        "occurred_at": cmd.occurred_at,
        "customer_balances": step.balances(out),
        "lines_changed": oc.lines_changed(out.lines_changed, m),
    }


def _money_in_bonuses(
    step: Step,
    cmd: RecordDebtPayment | RecordAdvance,
    kind: BonusOperationKind,
    out: MoneyInOutcome,
) -> ApplyBonuses:
    """Loyalty's part of money taken at the till (it belongs to no sale)."""
    return step.bonuses(
        kind, cmd.customer, store_id=cmd.store_id, sale_id=None, at=cmd.occurred_at, out=out
    )


def decide_refund(step: Step, cmd: RecordRefund) -> Decision:
    ref = step.ledger.refund(
        refund_id=cmd.refund_id,
        amount=cmd.amount,
        method=Method(cmd.method.value),
        at=cmd.occurred_at,
    )
    event = RefundRecorded(
        refund_id=cmd.refund_id,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer.customer_id,
        store_id=cmd.store_id,
        terminal_id=cmd.terminal_id,
        method=cmd.method,
        amount=step.m(ref.amount),
        occurred_at=cmd.occurred_at,
        customer_balances=step.balances(ref),
    )
    # nothing to apply: loyalty, which serialises the customer, answers with its balance
    # after every bonus operation answered before (a cancellation the cached balance may
    # not know of yet), and that is the balance the refund's answer carries
    bonus = step.bonuses(
        BonusOperationKind.REFUND,
        cmd.customer,
        store_id=cmd.store_id,
        sale_id=None,
        at=cmd.occurred_at,
        out=ref,
    )
    return Decision(ref, event, bonus)


def decide_return(step: Step, cmd: RecordReturn) -> Decision:
    ret = step.ledger.record_return(
        return_id=cmd.return_id,
        sale_id=cmd.sale_id,
        lines=[ReturnRequest(x.line_no, x.quantity) for x in cmd.lines],
        refund=Method(cmd.refund.value),
        at=cmd.occurred_at,
        mode=Mode(cmd.settings.credit_mode.value),
        dated=cmd.occurred_at_given,
    )
    m, sale = step.m, step.ledger.sales[cmd.sale_id]
    returned = []
    for x in ret.lines:
        line = sale.line(x.line_no)
        assert line is not None
        returned.append(
            ReturnedLine(
                line_no=x.line_no,
                sku=line.sku,
                barcode=line.barcode,
                name=line.name,
                quantity=x.quantity,
                value=m(x.value),
                debt_cancelled=m(x.debt_cancelled),
            )
        )
    event = ReturnRecorded(
        return_id=cmd.return_id,
        sale_id=cmd.sale_id,
        chain_id=cmd.chain_id,
        customer_id=step.customer_id,
        store_id=cmd.store_id,
        terminal_id=cmd.terminal_id,
        refund=cmd.refund,
        lines=returned,
        value=m(ret.value),
        debt_cancelled=m(ret.debt_cancelled),
        bonus_restored=m(ret.bonus_restored),
        refunded=m(ret.refunded),
        applied_to_debt=m(ret.applied_to_debt),
        allocated=oc.allocations(ret.allocated, cmd.settings.credit_mode, m),
        advance_added=m(ret.advance_added),
        bonus_reversed=m(Decimal(0)),
        occurred_at=cmd.occurred_at,
        customer_balances=step.balances(ret) if step.customer_id else None,
        lines_changed=oc.lines_changed(ret.lines_changed, m),
    )
    bonus = None
    if cmd.customer is not None:
        bonus = step.bonuses(
            BonusOperationKind.RETURN,
            cmd.customer,
            store_id=cmd.store_id,
            sale_id=cmd.sale_id,
            at=cmd.occurred_at,
            out=ret,
        )
    return Decision(ret, event, bonus)


def decide_revoke(step: Step, cmd: RevokeDiscount) -> Decision:
    """A requested revocation, under the request's own operation id (`step.operation_id`,
    `revoke_attempt_id`): one that fails for good leaves the next request of the sale free."""
    sale = step.ledger.sales.get(cmd.sale_id)
    if sale is None:
        raise Refusal("not_found", f"sale {cmd.sale_id} is not this customer's")
    today = local_date(cmd.requested_at, cmd.settings.timezone)
    rev = step.ledger.revoke_discount(
        sale_id=cmd.sale_id, at=cmd.requested_at, today=today, operation_id=step.operation_id
    )
    event = revoked_event(
        cmd.chain_id, cmd.customer_id, rev, "requested", cmd.requested_at, step.cached_bonus, step.m
    )
    # nothing to apply, as for a refund: the answer carries loyalty's balance after every bonus
    # operation answered before it. The command has no store or customer snapshot: the sale's
    # store (as credit recorded it) names where it happens; nothing accrues.
    bonus = step.bonuses(
        BonusOperationKind.REVOKE_DISCOUNT,
        cmd.customer_id,
        store_id=sale.store_id,
        sale_id=None,
        at=cmd.requested_at,
        out=rev,
    )
    return Decision(rev, event, bonus)


def revoked_event(
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    rev: Any,
    trigger: Literal["automatic", "requested"],
    at: datetime,
    bonus_balance: Decimal,
    m: oc.Money,
) -> DiscountRevoked:
    return DiscountRevoked(
        sale_id=rev.sale_id,
        chain_id=chain_id,
        customer_id=customer_id,
        amount=m(rev.amount),
        lines=[RevokedDiscountLine(line_no=n, amount=m(a)) for n, a in rev.lines],
        trigger=trigger,
        revoked_at=at,
        customer_balances=oc.balances(rev.debt_after, rev.advance_after, bonus_balance, m),
        lines_changed=oc.lines_changed(rev.lines_changed, m),
    )
