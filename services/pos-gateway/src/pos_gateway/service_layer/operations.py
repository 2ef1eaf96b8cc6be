"""Till and back-office operations: static checks, then request row + outbox command in one
transaction, then a bounded wait for the outcome (201/200, the refusal, or 202 pending).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Row

from contracts.base import Message
from contracts.enums import PaymentMethod, RefundMethod
from contracts.gateway.v1 import (
    AllocationRequest,
    CancelPaymentBonus,
    RecordAdvance,
    RecordDebtPayment,
    RecordRefund,
    RecordReturn,
    RecordSale,
    ReturnLineRequest,
    RevokeDiscount,
    SalePayment,
)
from contracts.money import format_money
from pos_gateway import schemas as s
from pos_gateway.adapters.repository import Operations, TillLookup, TillRequest
from pos_gateway.domain.auth import Principal
from pos_gateway.domain.errors import GatewayError, invalid, not_found, problem_body
from pos_gateway.domain.money import money
from pos_gateway.domain.operations import OpRef
from pos_gateway.domain.sales import (
    PaymentIn,
    check_money_scale,
    check_occurred_at,
    check_sale_customer_rules,
    price_sale,
)
from pos_gateway.service_layer import idempotency
from pos_gateway.service_layer.common import (
    correlation_id,
    customer_snapshot,
    found_chain,
    load_chain,
    load_customer,
    settings_snapshot,
)
from pos_gateway.service_layer.masterdata import card_customer
from pos_gateway.service_layer.outcomes import (
    ADVANCE,
    BONUS_CANCEL,
    DEBT_PAYMENT,
    ID_FIELD,
    REFUND,
    RETURN,
    REVOKE_DISCOUNT,
    SALE,
    SUCCESS_STATUS,
    read_operation,
    refusal_extra,
    refusal_status,
    render_outcome,
    sale_lines_json,
    status_url,
)
from pos_gateway.service_layer.ports import GatewayPorts
from pos_gateway.service_layer.runner import Answer
from servicekit.outbox import outbox_message
from servicekit.sql import Db


def _now() -> datetime:
    return datetime.now(UTC)


def _chain_id(principal: Principal) -> uuid.UUID:
    assert principal.chain_id is not None
    return principal.chain_id


def _store(principal: Principal) -> uuid.UUID:
    assert principal.store_id is not None, "till operations need a terminal key"
    return principal.store_id


def _terminal(principal: Principal) -> uuid.UUID:
    assert principal.terminal_id is not None, "till operations need a terminal key"
    return principal.terminal_id


def _occurred_at(gw: GatewayPorts, value: datetime | None, now: datetime) -> datetime:
    return check_occurred_at(
        value,
        now,
        max_days=gw.settings.offline_max_days,
        skew=timedelta(seconds=gw.settings.clock_skew_seconds),
    )


def _sold_at(sale: Row[Any]) -> datetime:
    """When a completed sale was made (its outcome's `sold_at`)."""
    return datetime.fromisoformat(sale.outcome["sold_at"])


def _not_before_sale(occurred_at: datetime, sale: Row[Any]) -> None:
    """A return, or a payment allocated to a sale, is never dated before that sale."""
    sold_at = _sold_at(sale)
    if occurred_at < sold_at:
        raise invalid(
            "occurred_at", f"may not be before the sale it refers to ({sold_at.isoformat()})"
        )


# --------------------------------------------------------------------------- answering


async def _render(gw: GatewayPorts, row: Row[Any]) -> Answer:
    kind, op_id, minor = row.kind, row.operation_id, row.minor_units
    id_field = ID_FIELD[kind]
    if row.status == "pending":
        return Answer(
            202, {id_field: str(op_id), "status": "pending", "status_url": status_url(kind, op_id)}
        )
    if row.status == "refused":
        status = refusal_status(row.code)
        return Answer(
            status,
            problem_body(
                row.code,
                row.detail or row.code,
                status,
                **{id_field: str(op_id)},
                **refusal_extra(row),
            ),
        )
    body = render_outcome(kind, row.outcome, minor)
    if kind == BONUS_CANCEL:
        # loyalty's answer carries the bonus balance; debt and advance come from credit itself,
        # since reporting's read model may still lag behind (seen under faults by tools/chaos)
        balances = await gw.credit_api.debt_and_advance(row.chain_id, row.customer_id)
        body["customer"] = {
            "debt": render_outcome_money(balances.get("debt", "0"), minor),
            "advance": render_outcome_money(balances.get("advance", "0"), minor),
            "bonus_balance": body["customer"]["bonus_balance"],
        }
    return Answer(SUCCESS_STATUS[kind], body)


def render_outcome_money(value: Any, minor: int) -> str:
    return format_money(Decimal(str(value)), minor)


async def _outcome_row(gw: GatewayPorts, ref: OpRef, *, wait: bool, fresh: bool) -> Row[Any]:
    """The operation's row: with its outcome, or still pending once the bounded wait (`wait`)
    is over. `fresh`: see `answer_for`."""

    async def read() -> Row[Any] | None:
        async with gw.read_one() as db:
            return await read_operation(db, ref)

    async def current() -> Row[Any]:
        found = await read()
        if found is None:
            raise not_found("operation")
        return found

    async def check() -> Row[Any] | None:  # the outcome, once there is one
        found = await read()
        return found if found is not None and found.status != "pending" else None

    row = None if fresh else await current()
    if (row is None or row.status == "pending") and wait:
        row = (
            await gw.waiter.wait_for(
                ref.key,
                check,
                wait_seconds=gw.settings.sale_wait_seconds,
                poll_interval=gw.settings.outcome_poll_interval_seconds,
                check_first=not fresh,
            )
            or row
        )
    if row is None:  # a fresh operation still pending after the wait
        row = await current()
    return row


async def answer_for(
    gw: GatewayPorts,
    principal: Principal,
    ref: OpRef,
    idempotency_key: str | None,
    *,
    wait: bool = True,
    fresh: bool = False,
    follower: bool = False,
) -> Answer:
    """Wait (bounded) for the operation's outcome and answer it.

    `follower`: this request asked for an operation that exists once per object while
    another request's was in flight (`_submit_once_per_object`); it gets that one's refusal,
    or `409 already_revoked` once it has completed.

    `fresh`: this request has just committed the operation, so it is pending and nobody has
    read it yet: no read before the wait, and the wait's first look is after the first
    wake-up or poll (an outcome that came in between is found by that poll). A till
    operation's final answer is not copied into the idempotency key: a retry renders it again
    from the operation row the key links to, which gives the same answer without a write per
    request. Only a bonus cancellation keeps its first answer
    there, because its debt and advance are read from credit at the time of answering."""
    row = await _outcome_row(gw, ref, wait=wait, fresh=fresh)
    if follower and row.status == "completed":
        return _already_revoked(row.operation_id)
    answer = await _render(gw, row)
    if idempotency_key and answer.status != 202 and ref.kind == BONUS_CANCEL:
        async with gw.session() as session, session.begin():
            await idempotency.store_response(
                session, principal.scope, idempotency_key, answer.status, answer.body
            )
    return answer


async def _replay(
    gw: GatewayPorts, principal: Principal, earlier: Row[Any], idempotency_key: str
) -> Answer:
    if earlier.status_code is not None:
        return Answer(earlier.status_code, earlier.response)
    follower = earlier.operation_kind == REVOKE_DISCOUNT_FOLLOWER
    kind = REVOKE_DISCOUNT if follower else earlier.operation_kind
    ref = OpRef(earlier.chain_id, kind, earlier.operation_id)
    return await answer_for(gw, principal, ref, idempotency_key, follower=follower)


#: The idempotency key of a revoke-discount request that found another one in flight for the
#: same sale is linked to that operation under this kind: its answer follows that operation's
#: outcome (`409 already_revoked` once it completed), so a retry gets it again.
REVOKE_DISCOUNT_FOLLOWER = "revoke_discount_follower"


def _already_revoked(sale_id: uuid.UUID) -> Answer:
    detail = "the discount was already revoked"
    return Answer(409, problem_body("already_revoked", detail, 409, sale_id=str(sale_id)))


async def _insert_operation(
    session: Db,
    ref: OpRef,
    principal: Principal,
    *,
    customer_id: uuid.UUID | None,
    request_hash: str,
    request: dict[str, Any],
    status: str = "pending",
    code: str | None = None,
    detail: str | None = None,
) -> None:
    await Operations(session).insert(
        ref,
        status=status,
        store_id=principal.store_id,
        terminal_id=principal.terminal_id,
        customer_id=customer_id,
        request_hash=request_hash,
        request=request,
        code=code,
        detail=detail,
    )


async def _send(
    session: Db,
    principal: Principal,
    ref: OpRef,
    command: Message,
    *,
    key: uuid.UUID,
    customer_id: uuid.UUID | None,
    request_hash: str,
    idempotency_key: str | None,
    lines: Sequence[dict[str, Any]] = (),
    payments: Sequence[dict[str, Any]] = (),
) -> bool:
    """The request row with its sale lines and payments, the command in the outbox and the
    key's link: one statement. False when the operation exists already (nothing written)."""
    envelope, outbox = outbox_message(
        command.TOPIC, command, key=key, chain_id=ref.chain_id, correlation_id=correlation_id()
    )
    request = TillRequest(
        store_id=principal.store_id,
        terminal_id=principal.terminal_id,
        customer_id=customer_id,
        request_hash=request_hash,
        request=envelope.payload,  # the command as JSON
        lines=lines,
        payments=payments,
    )
    return await Operations(session).record(
        ref,
        request,
        outbox,
        idempotency=(principal.scope, idempotency_key) if idempotency_key else None,
    )


def _lock_name(*parts: object) -> str:
    # serializes requests naming the same object (a POS-chosen sale id, one payment...)
    return "|".join(str(p) for p in parts)


async def _lock(session: Db, *parts: object) -> None:
    await Operations(session).lock_name(_lock_name(*parts))


# --------------------------------------------------------------------------- sales


def _prepare_sale(
    gw: GatewayPorts,
    found: TillLookup,
    chain: Any,
    principal: Principal,
    sale_id: uuid.UUID,
    body: s.SaleCreate,
) -> tuple[RecordSale, uuid.UUID | None]:
    now = _now()
    sold_at = _occurred_at(gw, body.occurred_at, now)
    payments_in = [PaymentIn(p.method, p.amount) for p in body.payments]
    priced = price_sale(
        body.lines,
        payments_in,
        body.change_to_advance,
        chain.minor_units,
    )
    customer = _sale_customer(found, body)
    check_sale_customer_rules(
        payments_in,
        has_card=body.card_number is not None,
        customer_vip=None if customer is None else bool(customer.vip),
        change_to_advance=priced.change_to_advance,
    )
    minor = chain.minor_units
    command = RecordSale(
        sale_id=sale_id,
        chain_id=chain.chain_id,
        store_id=_store(principal),
        terminal_id=_terminal(principal),
        customer=None if customer is None else customer_snapshot(customer, minor),
        settings=settings_snapshot(chain),
        card_number=body.card_number,
        sold_at=sold_at,
        lines=list(priced.lines),
        payments=[
            SalePayment(payment_id=uuid.uuid4(), method=p.method, amount=money(p.amount, minor))
            for p in payments_in
        ],
        total=money(priced.total, minor),
        change=money(priced.change, minor),
        change_to_advance=money(priced.change_to_advance, minor),
    )
    return command, None if customer is None else customer.customer_id


def _sale_customer(found: TillLookup, body: s.SaleCreate) -> Any:
    """The sale's customer: the card's (`customer_id`, if given too, must match it), the one
    named by `customer_id`, or None (anonymous)."""
    if body.card_number is not None:
        customer = card_customer(found)
        if body.customer_id is not None and body.customer_id != customer.customer_id:
            raise invalid("customer_id", "does not match the card's customer")
        return customer
    if body.customer_id is not None:
        if found.customer is None:
            raise invalid("customer_id", "no such customer")
        return found.customer
    return None


async def submit_sale(
    gw: GatewayPorts,
    principal: Principal,
    body: s.SaleCreate,
    sale_hash: str,
    idempotency_key: str,
    request_hash: str,
) -> Answer:
    """`sale_hash`: the body's `body_hash`, `request_hash` the request's (the key's claim)."""
    ref = OpRef(_chain_id(principal), SALE, body.sale_id or uuid.uuid4())
    refusal, fresh = None, False
    own_id = body.sale_id is not None
    async with gw.transaction() as session:
        # the key's claim, and the chain, card and customer with the sale id's lock: one
        # statement
        earlier, found = await idempotency.claim_then_look_up(
            session,
            principal.scope,
            idempotency_key,
            request_hash,
            ref.chain_id,
            card_number=body.card_number,
            customer_id=body.customer_id,
            lock_name=_lock_name(*ref.key) if own_id else None,
            api_key_hash=principal.unchecked_key_hash,
        )
        if found is not None:
            refusal, fresh = await _record_sale(
                gw, session, principal, ref, body, found, sale_hash, idempotency_key
            )
    if earlier is not None:
        return await _replay(gw, principal, earlier, idempotency_key)
    if refusal is not None:
        return refusal
    return await answer_for(gw, principal, ref, idempotency_key, fresh=fresh)


async def _record_sale(
    gw: GatewayPorts,
    session: Db,
    principal: Principal,
    ref: OpRef,
    body: s.SaleCreate,
    found: TillLookup,
    sale_hash: str,
    idempotency_key: str,
) -> tuple[Answer | None, bool]:
    """The checks and rows of a new sale, `found` by the claim's lookup (a sale id the POS
    chose is locked for the transaction by it): (its static refusal or None, whether this
    request wrote the operation). A sale already recorded under the POS's sale id is answered
    instead of this one (`_join_existing`)."""
    own_id = body.sale_id is not None
    chain = found_chain(found)
    try:
        command, customer_id = _prepare_sale(gw, found, chain, principal, ref.operation_id, body)
    except GatewayError as exc:
        existing = await read_operation(session, ref) if own_id else None
        if existing is not None:
            await _join_existing(session, principal, existing, sale_hash, idempotency_key)
            return None, False
        if exc.code == "validation_error":
            raise
        return await _refuse_sale_at_once(
            session, principal, ref, body, sale_hash, idempotency_key, exc
        ), False
    if await _send(
        session,
        principal,
        ref,
        command,
        key=customer_id or ref.operation_id,
        customer_id=customer_id,
        request_hash=sale_hash,
        idempotency_key=idempotency_key,
        lines=_sale_line_rows(command),
        payments=[{"payment_id": p.payment_id, "method": p.method.value} for p in command.payments],
    ):
        return None, True
    existing = await read_operation(session, ref)
    assert existing is not None, "nothing was written because the sale exists"
    await _join_existing(session, principal, existing, sale_hash, idempotency_key)
    return None, False


async def _join_existing(
    session: Db,
    principal: Principal,
    existing: Row[Any],
    sale_hash: str,
    idempotency_key: str,
) -> None:
    """A sale is recorded under the POS's sale id already: the same request gets its answer
    (the key is linked to it), another one a conflict."""
    if existing.request_hash != sale_hash:
        raise GatewayError("idempotency_conflict", "this sale_id was used with a different request")
    await idempotency.link_operation(
        session, principal.scope, idempotency_key, existing.chain_id, SALE, existing.operation_id
    )


async def _refuse_sale_at_once(
    session: Db,
    principal: Principal,
    ref: OpRef,
    body: s.SaleCreate,
    sale_hash: str,
    idempotency_key: str,
    exc: GatewayError,
) -> Answer:
    """A static refusal: nothing is published; the refusal is kept under the POS's sale id."""
    extra: dict[str, Any] = {}
    if body.sale_id is not None:
        extra["sale_id"] = str(body.sale_id)
        await _insert_operation(
            session,
            ref,
            principal,
            customer_id=None,
            request_hash=sale_hash,
            request=body.model_dump(mode="json"),
            status="refused",
            code=exc.code,
            detail=exc.detail,
        )
    answer = Answer(exc.status, problem_body(exc.code, exc.detail, exc.status, **extra))
    await idempotency.store_response(
        session, principal.scope, idempotency_key, answer.status, answer.body
    )
    return answer


def _sale_line_rows(command: RecordSale) -> list[dict[str, Any]]:
    return [
        {
            "line_no": ln.line_no,
            "sku": ln.sku,
            "barcode": ln.barcode,
            "name": ln.name,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price,
            "discount": ln.discount,
            "amount": ln.amount,
        }
        for ln in command.lines
    ]


async def read_sale(gw: GatewayPorts, principal: Principal, sale_id: uuid.UUID) -> dict[str, Any]:
    ref = OpRef(_chain_id(principal), SALE, sale_id)
    async with gw.read() as session:
        row = await read_operation(session, ref)
        if row is None:
            raise not_found("sale")
        if row.status == "pending":
            return {"sale_id": str(sale_id), "status": "pending"}
        if row.status == "refused":
            return {
                "sale_id": str(sale_id),
                "status": "refused",
                "code": row.code,
                "detail": row.detail,
            }
        body = render_outcome(SALE, row.outcome, row.minor_units)
        body["lines"] = await sale_lines_json(session, ref.chain_id, sale_id, row.minor_units)
        return body


async def read_operation_status(
    gw: GatewayPorts, principal: Principal, kind: str, operation_id: uuid.UUID
) -> dict[str, Any]:
    if kind not in ID_FIELD:
        raise not_found("operation")
    ref = OpRef(_chain_id(principal), kind, operation_id)
    async with gw.read() as session:
        row = await read_operation(session, ref)
    if row is None:
        raise not_found("operation")
    id_field = ID_FIELD[kind]
    if row.status == "pending":
        return {id_field: str(operation_id), "status": "pending"}
    if row.status == "refused":
        return {
            id_field: str(operation_id),
            "status": "refused",
            "code": row.code,
            "detail": row.detail,
            **refusal_extra(row),
        }
    answer = await _render(gw, row)
    return {"status": "completed", **answer.body}


# --------------------------------------------------------------------------- money at the till


def _till_customer(found: TillLookup, card_number: str | None, *, card_required: bool) -> Any:
    """The customer named by id; a card, if given, must be that customer's."""
    customer = found.customer
    if customer is None:
        raise not_found("customer")
    if card_number is None:
        if card_required:
            raise GatewayError("card_required", "the customer's card is required")
        return customer
    if card_customer(found).customer_id != customer.customer_id:
        raise GatewayError("card_not_found", "no such card for this customer")
    return customer


async def _submit_simple(
    gw: GatewayPorts,
    principal: Principal,
    idempotency_key: str,
    request_hash: str,
    build: Any,
    named: tuple[uuid.UUID | None, str | None] = (None, None),
) -> Answer:
    """Claim the key; `build(session, chain, found)` checks and returns (ref, command,
    customer_id, key, payment rows), `found` being the chain and the customer and card
    `named` (customer id, card number; read with the key's claim, one statement)."""
    customer_id, card_number = named
    async with gw.transaction() as session:
        earlier, found = await idempotency.claim_then_look_up(
            session,
            principal.scope,
            idempotency_key,
            request_hash,
            _chain_id(principal),
            customer_id=customer_id,
            card_number=card_number,
            api_key_hash=principal.unchecked_key_hash,
        )
        if found is not None:
            ref, command, owner_id, key, payments = await build(session, found_chain(found), found)
            written = await _send(
                session,
                principal,
                ref,
                command,
                key=key,
                customer_id=owner_id,
                request_hash=request_hash,
                idempotency_key=idempotency_key,
                payments=payments,
            )
            assert written, "a new operation id"
    if earlier is not None:
        return await _replay(gw, principal, earlier, idempotency_key)
    return await answer_for(gw, principal, ref, idempotency_key, fresh=True)


def _payment_row(ref: OpRef, method: str) -> list[dict[str, Any]]:
    """The payment row of a debt payment or an advance (its id is the operation's)."""
    return [{"payment_id": ref.operation_id, "method": method}]


async def _check_allocations(
    session: Db,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    body: s.DebtPaymentCreate,
    occurred_at: datetime,
) -> None:
    """Each allocation names a line (or a whole sale) once, of a completed sale of this
    customer; a payment dated by the till is not dated before the sales it pays."""
    seen: set[tuple[uuid.UUID, int | None]] = set()
    for i, a in enumerate(body.allocations):
        if (a.sale_id, a.line_no) in seen:
            raise invalid(f"allocations.{i}", "this sale/line is named twice")
        seen.add((a.sale_id, a.line_no))
        sale = await read_operation(session, OpRef(chain_id, SALE, a.sale_id))
        if sale is None or sale.status != "completed" or sale.customer_id != customer_id:
            raise invalid(f"allocations.{i}.sale_id", "no such sale of this customer")
        if body.occurred_at is not None:
            _not_before_sale(occurred_at, sale)


async def submit_debt_payment(
    gw: GatewayPorts,
    principal: Principal,
    customer_id: uuid.UUID,
    body: s.DebtPaymentCreate,
    idempotency_key: str,
    request_hash: str,
) -> Answer:
    async def build(session: Db, chain: Any, found: TillLookup) -> tuple[Any, ...]:
        customer = _till_customer(found, body.card_number, card_required=False)
        if body.kind.value == "take_money" and body.amount is None:
            raise invalid("amount", "take_money needs an amount")
        if body.kind.value == "pay_debt" and body.amount is not None:
            raise invalid("amount", "pay_debt takes no amount: the whole debt is paid")
        check_money_scale(
            [("amount", body.amount)]
            + [(f"allocations.{i}.amount", a.amount) for i, a in enumerate(body.allocations)],
            chain.minor_units,
        )
        occurred_at = _occurred_at(gw, body.occurred_at, _now())
        await _check_allocations(session, chain.chain_id, customer_id, body, occurred_at)
        if (
            body.amount is not None
            and sum((a.amount for a in body.allocations), Decimal(0)) > body.amount
        ):
            raise invalid("allocations", "allocations exceed the amount")
        minor = chain.minor_units
        ref = OpRef(chain.chain_id, DEBT_PAYMENT, uuid.uuid4())
        command = RecordDebtPayment(
            payment_id=ref.operation_id,
            chain_id=chain.chain_id,
            store_id=_store(principal),
            terminal_id=_terminal(principal),
            customer=customer_snapshot(customer, minor),
            settings=settings_snapshot(chain),
            card_number=body.card_number,
            kind=body.kind,
            amount=None if body.amount is None else money(body.amount, minor),
            method=body.method,
            allocations=[
                AllocationRequest(
                    sale_id=a.sale_id, line_no=a.line_no, amount=money(a.amount, minor)
                )
                for a in body.allocations
            ],
            occurred_at=occurred_at,
            occurred_at_given=body.occurred_at is not None,
        )
        return ref, command, customer_id, customer_id, _payment_row(ref, body.method.value)

    named = (customer_id, body.card_number)
    return await _submit_simple(gw, principal, idempotency_key, request_hash, build, named)


def _money_at_till(
    gw: GatewayPorts,
    principal: Principal,
    chain: Any,
    found: TillLookup,
    body: s.MoneyAtTill,
    kind: str,
    *,
    card_required: bool,
) -> tuple[OpRef, dict[str, Any]]:
    """What an advance and a refund share: the customer at the till, the amount's scale, the
    operation's reference and the command's fields other than its id."""
    customer = _till_customer(found, body.card_number, card_required=card_required)
    check_money_scale([("amount", body.amount)], chain.minor_units)
    occurred_at = _occurred_at(gw, body.occurred_at, _now())
    fields = {
        "chain_id": chain.chain_id,
        "store_id": _store(principal),
        "terminal_id": _terminal(principal),
        "customer": customer_snapshot(customer, chain.minor_units),
        "settings": settings_snapshot(chain),
        "card_number": body.card_number,
        "amount": money(body.amount, chain.minor_units),
        "method": body.method,
        "occurred_at": occurred_at,
        "occurred_at_given": body.occurred_at is not None,
    }
    return OpRef(chain.chain_id, kind, uuid.uuid4()), fields


async def submit_advance(
    gw: GatewayPorts,
    principal: Principal,
    customer_id: uuid.UUID,
    body: s.AdvanceCreate,
    idempotency_key: str,
    request_hash: str,
) -> Answer:
    async def build(session: Db, chain: Any, found: TillLookup) -> tuple[Any, ...]:
        ref, fields = _money_at_till(
            gw, principal, chain, found, body, ADVANCE, card_required=False
        )
        command = RecordAdvance(payment_id=ref.operation_id, **fields)
        return ref, command, customer_id, customer_id, _payment_row(ref, body.method.value)

    named = (customer_id, body.card_number)
    return await _submit_simple(gw, principal, idempotency_key, request_hash, build, named)


async def submit_refund(
    gw: GatewayPorts,
    principal: Principal,
    customer_id: uuid.UUID,
    body: s.RefundCreate,
    idempotency_key: str,
    request_hash: str,
) -> Answer:
    async def build(session: Db, chain: Any, found: TillLookup) -> tuple[Any, ...]:
        # money leaves the store: the customer's card, not an id alone, must be presented
        ref, fields = _money_at_till(gw, principal, chain, found, body, REFUND, card_required=True)
        del fields["occurred_at_given"]  # a refund pays no sale: nothing to check its date by
        command = RecordRefund(refund_id=ref.operation_id, **fields)
        return ref, command, customer_id, customer_id, []

    named = (customer_id, body.card_number)
    return await _submit_simple(gw, principal, idempotency_key, request_hash, build, named)


async def submit_return(
    gw: GatewayPorts,
    principal: Principal,
    sale_id: uuid.UUID,
    body: s.ReturnCreate,
    idempotency_key: str,
    request_hash: str,
) -> Answer:
    async def build(session: Db, chain: Any, _found: TillLookup) -> tuple[Any, ...]:
        sale = await read_operation(session, OpRef(chain.chain_id, SALE, sale_id))
        if sale is None or sale.status != "completed":
            raise not_found("sale")
        rows = {r.line_no: r for r in await Operations(session).sale_lines(chain.chain_id, sale_id)}
        seen: set[int] = set()
        for i, ln in enumerate(body.lines):
            if ln.line_no in seen:
                raise invalid(f"lines.{i}.line_no", "this line is named twice")
            seen.add(ln.line_no)
            row = rows.get(ln.line_no)
            if row is None:
                raise invalid(f"lines.{i}.line_no", "the sale has no such line")
            if ln.quantity > row.quantity - row.returned_quantity:
                raise GatewayError(
                    "return_exceeds_sold",
                    f"line {ln.line_no}: {ln.quantity} returned but only "
                    f"{row.quantity - row.returned_quantity} left of what was sold",
                )
        customer = None
        if sale.customer_id is not None:
            customer = await load_customer(session, chain.chain_id, sale.customer_id)
        if customer is None and body.refund is RefundMethod.ADVANCE:
            raise invalid("refund", "an anonymous sale cannot be refunded as advance")
        occurred_at = _occurred_at(gw, body.occurred_at, _now())
        if body.occurred_at is not None:
            _not_before_sale(occurred_at, sale)
        else:
            # a sale dated by a till clock running ahead (within the allowed skew) is returned
            # at once: the return is dated with the sale, never before it
            occurred_at = max(occurred_at, _sold_at(sale))
        ref = OpRef(chain.chain_id, RETURN, uuid.uuid4())
        command = RecordReturn(
            return_id=ref.operation_id,
            sale_id=sale_id,
            chain_id=chain.chain_id,
            store_id=_store(principal),
            terminal_id=_terminal(principal),
            customer=None if customer is None else customer_snapshot(customer, chain.minor_units),
            settings=settings_snapshot(chain),
            lines=[
                ReturnLineRequest(line_no=ln.line_no, quantity=ln.quantity) for ln in body.lines
            ],
            refund=body.refund,
            occurred_at=occurred_at,
            occurred_at_given=body.occurred_at is not None,
        )
        return ref, command, sale.customer_id, sale.customer_id or sale_id, []

    return await _submit_simple(gw, principal, idempotency_key, request_hash, build)


# --------------------------------------------------------------------------- back office


async def _existing_operation(
    session: Db, ref: OpRef, on_completed: str
) -> tuple[Row[Any] | None, bool]:
    """The object's operation so far (under its lock), and whether this request follows it.

    A completed one is refused under "conflict"; a pending one is followed under "conflict";
    a refused one is deleted (None), so that it may be asked again."""
    follower = False
    existing = await read_operation(session, ref)
    if existing is not None and existing.status == "completed":
        if on_completed == "conflict":
            raise GatewayError("already_revoked", "the discount was already revoked")
    elif existing is not None and existing.status == "pending":
        follower = on_completed == "conflict"
    elif existing is not None and existing.status == "refused":
        await Operations(session).delete(ref)
        existing = None
    return existing, follower


async def _submit_once_per_object(
    gw: GatewayPorts,
    principal: Principal,
    idempotency_key: str | None,
    request_hash: str,
    ref: OpRef,
    prepare: Any,
    *,
    on_completed: str,
) -> Answer:
    """Operations that exist once per object (a payment's bonus, a sale's discount).

    `on_completed`: "replay" answers a finished one again (bonus-type: same answer), "conflict"
    refuses (revoke-discount: 409 already_revoked) - also while another request's is still in
    flight: this one then follows that one's outcome (`REVOKE_DISCOUNT_FOLLOWER`), so of ten
    concurrent requests exactly one gets the 200. A refused one may be asked again.
    """
    follower = False
    async with gw.session() as session, session.begin():
        earlier = None
        if idempotency_key:
            earlier = await idempotency.claim(
                session, principal.scope, idempotency_key, request_hash
            )
        if earlier is None:
            chain = await load_chain(session, ref.chain_id)
            command, customer_id = await prepare(session, chain)
            await _lock(session, *ref.key)
            existing, follower = await _existing_operation(session, ref, on_completed)
            if existing is None:
                written = await _send(
                    session,
                    principal,
                    ref,
                    command,
                    key=customer_id,
                    customer_id=customer_id,
                    request_hash=request_hash,
                    idempotency_key=idempotency_key,
                )
                assert written, "under the lock, after the existing one was deleted"
            elif idempotency_key:
                await idempotency.link_operation(
                    session,
                    principal.scope,
                    idempotency_key,
                    ref.chain_id,
                    REVOKE_DISCOUNT_FOLLOWER if follower else ref.kind,
                    ref.operation_id,
                )
    if earlier is not None and idempotency_key:
        return await _replay(gw, principal, earlier, idempotency_key)
    return await answer_for(gw, principal, ref, idempotency_key, follower=follower)


async def cancel_payment_bonus(
    gw: GatewayPorts,
    principal: Principal,
    payment_id: uuid.UUID,
    idempotency_key: str | None,
    request_hash: str,
) -> Answer:
    chain_id = _chain_id(principal)

    async def prepare(session: Db, chain: Row[Any]) -> tuple[Message, uuid.UUID]:
        payment = await Operations(session).payment(chain_id, payment_id)
        if payment is None or payment.customer_id is None:
            raise not_found("payment")
        command = CancelPaymentBonus(
            payment_id=payment_id,
            chain_id=chain_id,
            customer_id=payment.customer_id,
            requested_at=_now(),
        )
        return command, payment.customer_id

    return await _submit_once_per_object(
        gw,
        principal,
        idempotency_key,
        request_hash,
        OpRef(chain_id, BONUS_CANCEL, payment_id),
        prepare,
        on_completed="replay",
    )


async def revoke_discount(
    gw: GatewayPorts,
    principal: Principal,
    sale_id: uuid.UUID,
    idempotency_key: str | None,
    request_hash: str,
) -> Answer:
    chain_id = _chain_id(principal)

    async def prepare(session: Db, chain: Row[Any]) -> tuple[Message, uuid.UUID]:
        sale = await read_operation(session, OpRef(chain_id, SALE, sale_id))
        if sale is None or sale.status != "completed" or sale.customer_id is None:
            raise not_found("sale")
        command = RevokeDiscount(
            sale_id=sale_id,
            chain_id=chain_id,
            customer_id=sale.customer_id,
            settings=settings_snapshot(chain),
            requested_at=_now(),
        )
        return command, sale.customer_id

    return await _submit_once_per_object(
        gw,
        principal,
        idempotency_key,
        request_hash,
        OpRef(chain_id, REVOKE_DISCOUNT, sale_id),
        prepare,
        on_completed="conflict",
    )


__all__ = [
    "PaymentMethod",
    "answer_for",
    "cancel_payment_bonus",
    "read_operation_status",
    "read_sale",
    "revoke_discount",
    "submit_advance",
    "submit_debt_payment",
    "submit_refund",
    "submit_return",
    "submit_sale",
]
