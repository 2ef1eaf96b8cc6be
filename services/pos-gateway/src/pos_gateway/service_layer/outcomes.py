"""Operation rows and their outcomes: rendering the API answer, and the consumer handlers.

An operation row is written `pending` with its command; the gateway's consumer (group
`gateway`) stores the outcome event on it and wakes the requests waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.credit.v1 import (
    AdvanceRecorded,
    DebtPaymentRecorded,
    DiscountRevoked,
    OperationRefused,
    RefundRecorded,
    ReturnRecorded,
    SaleCompleted,
)
from contracts.loyalty.v1 import BonusCancellationRefused, PaymentBonusCancelled
from pos_gateway.adapters.repository import Operations
from pos_gateway.domain.errors import PROBLEMS
from pos_gateway.domain.money import fmt_money, fmt_quantity
from pos_gateway.domain.operations import OpRef
from pos_gateway.service_layer.common import balances_json
from pos_gateway.service_layer.waiter import wake_after_commit
from servicekit.consumer import MessageContext
from servicekit.sql import Db

SALE = "sale"
DEBT_PAYMENT = "debt_payment"
ADVANCE = "advance"
REFUND = "refund"
RETURN = "return"
REVOKE_DISCOUNT = "revoke_discount"
BONUS_CANCEL = "bonus_cancel"

ID_FIELD = {
    SALE: "sale_id",
    DEBT_PAYMENT: "payment_id",
    ADVANCE: "payment_id",
    REFUND: "refund_id",
    RETURN: "return_id",
    REVOKE_DISCOUNT: "sale_id",
    BONUS_CANCEL: "payment_id",
}
SUCCESS_STATUS = {
    SALE: 201,
    DEBT_PAYMENT: 201,
    ADVANCE: 201,
    REFUND: 201,
    RETURN: 201,
    REVOKE_DISCOUNT: 200,
    BONUS_CANCEL: 200,
}


def status_url(kind: str, operation_id: UUID) -> str:
    if kind == SALE:
        return f"/v1/sales/{operation_id}"
    return f"/v1/operations/{kind}/{operation_id}"


async def read_operation(session: Db, ref: OpRef) -> Any | None:
    """The operation row with its chain's minor units (its columns as attributes)."""
    return await Operations(session).read(ref)


# --------------------------------------------------------------------------- rendering


def _m(value: Any, minor: int) -> str | None:
    return fmt_money(None if value is None else Decimal(str(value)), minor)


def _customer(outcome: dict[str, Any], minor: int) -> dict[str, Any] | None:
    return balances_json(outcome.get("customer_balances"), minor)


def _sale_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "sale_id": outcome["sale_id"],
        "status": "completed",
        "sold_at": outcome["sold_at"],
        "total": _m(outcome["total"], minor),
        "paid": _m(outcome["paid"], minor),
        "on_account": _m(outcome["on_account"], minor),
        "advance_applied": _m(outcome["advance_applied"], minor),
        "due_date": outcome.get("due_date"),
        "bonus_accrued": _m(outcome["bonus_accrued"], minor),
        "bonus_spent": _m(outcome["bonus_spent"], minor),
        "payments": [
            {
                "payment_id": p["payment_id"],
                "method": p["method"],
                "amount": _m(p["amount"], minor),
                "bonus_accrued": _m(p["bonus_accrued"], minor),
            }
            for p in outcome.get("payments", [])
        ],
        "customer": _customer(outcome, minor),
    }


def _debt_payment_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "payment_id": outcome["payment_id"],
        "amount": _m(outcome["amount"], minor),
        "allocated": [
            {
                "sale_id": a["sale_id"],
                "line_no": a.get("line_no"),
                "amount": _m(a["amount"], minor),
            }
            for a in outcome.get("allocated", [])
        ],
        "advance_added": _m(outcome["advance_added"], minor),
        "bonus_accrued": _m(outcome["bonus_accrued"], minor),
        "customer": _customer(outcome, minor),
    }


def _advance_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "payment_id": outcome["payment_id"],
        "amount": _m(outcome["amount"], minor),
        "applied_to_debt": _m(outcome["applied_to_debt"], minor),
        "advance_added": _m(outcome["advance_added"], minor),
        "bonus_accrued": _m(outcome["bonus_accrued"], minor),
        "customer": _customer(outcome, minor),
    }


def _refund_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "refund_id": outcome["refund_id"],
        "amount": _m(outcome["amount"], minor),
        "customer": _customer(outcome, minor),
    }


def _return_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "return_id": outcome["return_id"],
        "value": _m(outcome["value"], minor),
        "debt_cancelled": _m(outcome["debt_cancelled"], minor),
        "bonus_restored": _m(outcome["bonus_restored"], minor),
        "refunded": _m(outcome["refunded"], minor),
        "advance_added": _m(outcome["advance_added"], minor),
        "bonus_reversed": _m(outcome["bonus_reversed"], minor),
        "customer": _customer(outcome, minor),
    }


def _revoked_discount_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    return {
        "sale_id": outcome["sale_id"],
        "discount_revoked": _m(outcome["amount"], minor),
        "customer": _customer(outcome, minor),
    }


def _bonus_cancellation_answer(outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    # loyalty knows only the bonus balance; debt and advance are added by the caller
    return {
        "payment_id": outcome["payment_id"],
        "bonus_cancelled": _m(outcome["cancelled"], minor),
        "customer": {"bonus_balance": _m(outcome["balance_after"], minor)},
    }


#: the API's answer for each kind of completed operation, from the outcome event's payload
_ANSWERS: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    SALE: _sale_answer,
    DEBT_PAYMENT: _debt_payment_answer,
    ADVANCE: _advance_answer,
    REFUND: _refund_answer,
    RETURN: _return_answer,
    REVOKE_DISCOUNT: _revoked_discount_answer,
    BONUS_CANCEL: _bonus_cancellation_answer,
}


def render_outcome(kind: str, outcome: dict[str, Any], minor: int) -> dict[str, Any]:
    """The API's answer for a completed operation, from the outcome event's payload."""
    answer = _ANSWERS.get(kind)
    if answer is None:
        raise ValueError(f"unknown operation kind {kind}")
    return answer(outcome, minor)


def refusal_status(code: str) -> int:
    return PROBLEMS.get(code, (422, ""))[0]


def refusal_extra(row: Row[Any]) -> dict[str, Any]:
    """What a refusal adds to its problem body: the `errors` of a `validation_error` credit
    found (kept in the row's outcome, which a refusal otherwise leaves empty)."""
    if row.outcome and "errors" in row.outcome:
        return {"errors": row.outcome["errors"]}
    return {}


async def sale_lines_json(
    session: AsyncSession, chain_id: UUID, sale_id: UUID, minor: int
) -> list[dict[str, Any]]:
    rows = await Operations(session).sale_lines(chain_id, sale_id)
    return [
        {
            "line_no": r.line_no,
            "sku": r.sku,
            "barcode": r.barcode,
            "name": r.name,
            "quantity": fmt_quantity(r.quantity),
            "unit_price": fmt_money(r.unit_price, minor),
            "discount": fmt_money(r.discount, minor),
            "amount": fmt_money(r.amount, minor),
            "returned_quantity": fmt_quantity(r.returned_quantity),
        }
        for r in rows
    ]


# --------------------------------------------------------------------------- consumer


async def _settle(
    db: Db,
    ref: OpRef,
    *,
    status: str,
    outcome: dict[str, Any] | None = None,
    code: str | None = None,
    detail: str | None = None,
) -> bool:
    """Store the outcome on a pending operation; False when there is none (or it is done)."""
    # the other instances' waiters through PostgreSQL, which delivers the notification at
    # this transaction's commit (outcome_listener); this process's at once after the commit
    settled = await Operations(db).settle_and_notify(
        ref, status=status, outcome=outcome, code=code, detail=detail
    )
    if settled is None:
        return False
    wake_after_commit(db, ref.key, settled)
    return True


def _json(payload: Any) -> dict[str, Any]:
    data: dict[str, Any] = payload.model_dump(mode="json")
    return data


async def _completed(ctx: MessageContext, kind: str, operation_id: UUID, event: Any) -> bool:
    """The operation completed: the outcome event itself is its stored outcome."""
    return await _settle(
        ctx.db,
        OpRef(event.chain_id, kind, operation_id),
        status="completed",
        outcome=_json(event),
    )


async def on_sale_completed(ctx: MessageContext, event: SaleCompleted) -> None:
    await _completed(ctx, SALE, event.sale_id, event)


async def on_debt_payment_recorded(ctx: MessageContext, event: DebtPaymentRecorded) -> None:
    await _completed(ctx, DEBT_PAYMENT, event.payment_id, event)


async def on_advance_recorded(ctx: MessageContext, event: AdvanceRecorded) -> None:
    await _completed(ctx, ADVANCE, event.payment_id, event)


async def on_refund_recorded(ctx: MessageContext, event: RefundRecorded) -> None:
    await _completed(ctx, REFUND, event.refund_id, event)


async def on_return_recorded(ctx: MessageContext, event: ReturnRecorded) -> None:
    settled = await _completed(ctx, RETURN, event.return_id, event)
    if not settled:
        return  # counted once: only on the pending -> completed transition
    operations = Operations(ctx.db)
    for line in event.lines:
        await operations.add_returned(event.chain_id, event.sale_id, line.line_no, line.quantity)


async def on_discount_revoked(ctx: MessageContext, event: DiscountRevoked) -> None:
    await _completed(ctx, REVOKE_DISCOUNT, event.sale_id, event)


_REFUSED_KIND = {
    "sale": SALE,
    "debt_payment": DEBT_PAYMENT,
    "advance": ADVANCE,
    "refund": REFUND,
    "return": RETURN,
    "revoke_discount": REVOKE_DISCOUNT,
}


async def on_operation_refused(ctx: MessageContext, event: OperationRefused) -> None:
    kind = _REFUSED_KIND.get(event.operation_kind.value)
    if kind is None:
        return
    errors = None
    if event.field is not None:  # a validation error found by credit names the request field
        errors = {"errors": [{"field": event.field, "message": event.detail}]}
    await _settle(
        ctx.db,
        OpRef(event.chain_id, kind, event.operation_id),
        status="refused",
        outcome=errors,
        code=event.code.value,
        detail=event.detail,
    )


async def on_payment_bonus_cancelled(ctx: MessageContext, event: PaymentBonusCancelled) -> None:
    await _completed(ctx, BONUS_CANCEL, event.payment_id, event)


async def on_bonus_cancellation_refused(
    ctx: MessageContext, event: BonusCancellationRefused
) -> None:
    await _settle(
        ctx.db,
        OpRef(event.chain_id, BONUS_CANCEL, event.payment_id),
        status="refused",
        code=event.code,
        detail=event.detail,
    )
