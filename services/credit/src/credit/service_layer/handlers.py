"""Command and answer handlers: the till saga that credit orchestrates with loyalty.

A command of a customer first locks the customer's row. If another operation of the customer
is waiting for loyalty, the command is parked and replayed, in order, when that one ends.
Otherwise the ledger decides: a refusal is recorded and published as ``OperationRefused``; an
accepted operation writes its entries as *pending* and asks loyalty (``ApplyBonuses``) in the
same transaction. ``BonusesApplied`` confirms it and publishes the outcome; ``BonusesRefused``
voids it (its entries never count) and publishes the refusal.

Every operation ends. One that fails for good on its way is refused as ``operation_failed``
(``fail_operation``): a command or an answer dead-lettered here (``on_dead_letter``), a parked
command whose replay raises (``drain_parked``), or no answer from loyalty within the deadline
(``service_layer.deadline``). Its pending entries are voided, loyalty is asked to undo whatever
it applied of it (``VoidBonuses``, after the ``ApplyBonuses`` on the same partition), and the
customer's parked commands are released in order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from contracts.base import Message
from contracts.credit.v1 import (
    AdvanceRecorded,
    DebtPaymentRecorded,
    DiscountRevoked,
    OperationRefused,
    RefundRecorded,
    ReturnRecorded,
    SaleCompleted,
    SaleSettled,
    VoidBonuses,
)
from contracts.enums import (
    BonusOperationKind,
    CreditMode,
    OperationKind,
    RefusalCode,
)
from contracts.envelope import Envelope, parse_payload
from contracts.gateway.v1 import (
    ChainRegistered,
    ChainSettingsChanged,
    RecordAdvance,
    RecordDebtPayment,
    RecordRefund,
    RecordReturn,
    RecordSale,
    RevokeDiscount,
)
from contracts.loyalty.v1 import (
    BonusesApplied,
    BonusesRefused,
    BonusesVoided,
    BonusMovementRecorded,
    PaymentBonusCancelled,
)
from contracts.topics import CREDIT_EVENTS, LOYALTY_COMMANDS
from credit.adapters.repository import CustomerRow, OperationRecord, Repository, Unparked
from credit.domain.errors import InvalidOperation, Refusal
from credit.domain.model import Ledger, revoke_attempt_id
from credit.service_layer import outcomes as oc
from credit.service_layer.decisions import Command, Decision, Step, decide, local_date
from credit.service_layer.emitter import Emitter
from servicekit import metrics
from servicekit.consumer import (
    DeadLetterHandler,
    Handler,
    MessageContext,
    PermanentError,
    is_transient,
)

log = logging.getLogger(__name__)

OUTCOME_TYPES: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (
        SaleCompleted,
        DebtPaymentRecorded,
        AdvanceRecorded,
        RefundRecorded,
        ReturnRecorded,
        DiscountRevoked,
    )
}


def identity(cmd: Command) -> tuple[uuid.UUID, OperationKind]:
    if isinstance(cmd, RecordSale):
        return cmd.sale_id, OperationKind.SALE
    if isinstance(cmd, RecordDebtPayment):
        return cmd.payment_id, OperationKind.DEBT_PAYMENT
    if isinstance(cmd, RecordAdvance):
        return cmd.payment_id, OperationKind.ADVANCE
    if isinstance(cmd, RecordRefund):
        return cmd.refund_id, OperationKind.REFUND
    if isinstance(cmd, RecordReturn):
        return cmd.return_id, OperationKind.RETURN
    return cmd.sale_id, OperationKind.REVOKE_DISCOUNT


def named_sales(cmd: Command) -> list[uuid.UUID]:
    """The sales a command names, read whether or not they still owe something: the returned
    or revoked sale, the sales a payment allocates to, a new sale's own id (recorded before?)."""
    if isinstance(cmd, RecordDebtPayment):
        return [a.sale_id for a in cmd.allocations]
    if isinstance(cmd, RecordSale | RecordReturn | RevokeDiscount):
        return [cmd.sale_id]
    return []


def customer_of(cmd: Command) -> uuid.UUID | None:
    if isinstance(cmd, RevokeDiscount):
        return cmd.customer_id
    return cmd.customer.customer_id if cmd.customer is not None else None


def answered_id(op: Any) -> uuid.UUID:
    """The id the answer to a recorded operation names (`OperationRefused.operation_id`, what
    the gateway's request waits for): its own, but the sale's for a requested revocation,
    recorded under the id of its attempt (`revoke_attempt_id`)."""
    if op.kind == OperationKind.REVOKE_DISCOUNT.value:
        return uuid.UUID(op.outcome["sale_id"])
    operation_id: uuid.UUID = op.operation_id
    return operation_id


# --------------------------------------------------------------------------- entry points


async def handle_command(ctx: MessageContext, cmd: Command) -> None:
    """Consumer handler for every command on ``pos.commands.v1``."""
    await process_command(
        Repository(ctx.db), Emitter.caused_by(ctx.db, ctx.envelope), ctx.envelope, cmd
    )


async def _claim_for_answer(
    ctx: MessageContext, answer: BonusesApplied | BonusesRefused, status: str
) -> tuple[Repository, Emitter, Any]:
    """Under the customer's lock, end the operation loyalty answered as `status`: the
    repository, the emitter and the operation's row (None: the operation is not pending)."""
    repo = Repository(ctx.db)
    op = await repo.lock_customer_and_claim_pending(
        answer.customer_id, answer.chain_id, answer.operation_id, status
    )
    return repo, Emitter.caused_by(ctx.db, ctx.envelope), op


async def handle_bonuses_applied(ctx: MessageContext, answer: BonusesApplied) -> None:
    repo, emitter, op = await _claim_for_answer(ctx, answer, "confirmed")
    if op is None:
        return  # answered before, never asked, or given up (then loyalty is told to undo it)
    taken = await confirm(repo, emitter.with_correlation(op.correlation_id), op, answer)
    await drain_parked(repo, answer.customer_id, answer.chain_id, emitter, taken=taken)


async def handle_bonuses_refused(ctx: MessageContext, answer: BonusesRefused) -> None:
    repo, emitter, op = await _claim_for_answer(ctx, answer, "voided")
    if op is None:
        return
    taken = await repo.end_in_flight(answer.customer_id, bonus_balance=answer.balance)
    await refuse(
        repo,
        emitter.with_correlation(op.correlation_id),
        operation_id=answered_id(op),
        kind=OperationKind(op.kind),
        chain_id=op.chain_id,
        customer_id=answer.customer_id,
        code=RefusalCode(answer.code),
        detail=answer.detail,
    )
    await drain_parked(repo, answer.customer_id, answer.chain_id, emitter, taken=taken)


async def handle_bonus_balance(
    ctx: MessageContext, event: BonusMovementRecorded | PaymentBonusCancelled
) -> None:
    """Keep the last known bonus balance for answers that do not pass through loyalty (an
    automatic revocation, the overdue scan's; a refund and a requested revocation ask loyalty,
    whose answer carries its balance): after an expiry (a movement of no operation) or a
    cancelled payment bonus. The movements of an operation are passed over before this
    (`IGNORED`)."""
    if isinstance(event, BonusMovementRecorded) and _movement_of_an_operation(event):
        return  # the consumer passes these over; a handler called directly does the same
    repo = Repository(ctx.db)
    await repo.lock_customer(event.customer_id, event.chain_id)
    await repo.update_customer(event.customer_id, bonus_balance=event.balance_after)


def _movement_of_an_operation(event: BonusMovementRecorded) -> bool:
    """Loyalty writes an operation's movements in the transaction of the event that ends it
    for credit, after them on the customer's partition and carrying the balance after the
    whole operation: `BonusesApplied` / `BonusesRefused` (credit's operations), or
    `PaymentBonusCancelled` (a cancelled payment bonus, whose movement names the payment).
    A movement of a voided operation must not count either (`BonusesVoided` follows with the
    balance after the undo). So they tell credit nothing, and each cost it a transaction."""
    return event.operation_id is not None


async def handle_bonuses_voided(ctx: MessageContext, event: BonusesVoided) -> None:
    """Loyalty undid a failed operation's bonus side: the balance after the undo."""
    repo = Repository(ctx.db)
    await repo.lock_customer(event.customer_id, event.chain_id)
    await repo.update_customer(event.customer_id, bonus_balance=event.balance_after)


async def handle_chain_settings(
    ctx: MessageContext, event: ChainRegistered | ChainSettingsChanged
) -> None:
    """The overdue scan needs every chain's time zone and overdue_discount policy."""
    await Repository(ctx.db).remember_chain(
        event.chain_id, event.settings.model_dump(mode="json"), authoritative=True
    )


# --------------------------------------------------------------------------- the saga


async def process_command(
    repo: Repository, emitter: Emitter, envelope: Envelope, cmd: Command
) -> None:
    operation_id, kind = identity(cmd)
    customer_id = customer_of(cmd)
    settings = cmd.settings.model_dump(mode="json")
    customer = None
    if customer_id is None:
        await repo.remember_chain(cmd.chain_id, settings, authoritative=False)
        if isinstance(cmd, RecordReturn):
            # two returns of one anonymous sale: one by one
            await repo.lock_sale(cmd.chain_id, cmd.sale_id)
    else:
        try:
            customer = await repo.remember_chain_and_lock_customer(
                cmd.chain_id, settings, customer_id
            )
        except LookupError as exc:
            raise PermanentError(str(exc)) from exc
        if customer.in_flight is not None:
            await repo.park(customer_id, envelope.message_id, envelope.model_dump(mode="json"))
            return
    # a requested revocation is recorded under its request's own id, not the sale's: one that
    # fails for good (voided here and in loyalty) leaves the next request of the sale free,
    # and the sale may be asked again (the answer then is already_revoked); anything else seen
    # before, accepted or refused, is a duplicate and changes nothing (asked with the ledger's
    # read, under the customer's lock)
    attempt = None
    if isinstance(cmd, RevokeDiscount):
        attempt = revoke_attempt_id(cmd.sale_id, envelope.message_id)
    seen = None if attempt is not None else (operation_id, kind.value)
    ledger, known = await repo.load_for_command(
        chain_id=cmd.chain_id,
        customer_id=customer_id,
        sale_id=cmd.sale_id if isinstance(cmd, RecordReturn) else None,
        minor_units=cmd.settings.minor_units,
        seen=seen,
        named=named_sales(cmd),
    )
    if known:
        log.info("duplicate %s %s ignored", kind.value, operation_id)
        return
    try:
        await execute(repo, emitter, cmd, customer, ledger, operation_id=attempt)
    except Refusal as refusal:
        await refuse(
            repo,
            emitter,
            operation_id=operation_id,
            kind=kind,
            chain_id=cmd.chain_id,
            customer_id=customer_id,
            code=RefusalCode(refusal.code),
            detail=refusal.detail,
            field=refusal.field,
        )
    except InvalidOperation as exc:
        raise PermanentError(str(exc)) from exc


async def refuse(
    repo: Repository,
    emitter: Emitter,
    *,
    operation_id: uuid.UUID,
    kind: OperationKind,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    code: RefusalCode,
    detail: str,
    field: str | None = None,
) -> None:
    await repo.add_refusal(
        operation_id=operation_id,
        kind=kind.value,
        chain_id=chain_id,
        customer_id=customer_id,
        code=code.value,
        detail=detail,
    )
    await emitter.emit(
        CREDIT_EVENTS,
        OperationRefused(
            operation_id=operation_id,
            operation_kind=kind,
            chain_id=chain_id,
            customer_id=customer_id,
            code=code,
            detail=detail,
            refused_at=datetime.now(UTC),
            field=field,
        ),
        key=str(customer_id or operation_id),
    )


async def drain_parked(
    repo: Repository,
    customer_id: uuid.UUID,
    chain_id: uuid.UUID,
    emitter: Emitter,
    *,
    clear: bool = False,
    taken: Unparked | None = None,
) -> None:
    """Replay parked commands in arrival order until one waits for loyalty again.

    `clear`: the caller holds the customer's lock and has just ended its operation in flight,
    so the first look at the row is not needed. `taken`: besides, the caller has taken the
    first parked command off the queue (`Repository.end_in_flight`). Each replay runs in a
    savepoint: one that raises (other than a transient error, which fails the whole batch) is
    rolled back alone and refused as `operation_failed`, and the queue goes on, so a command
    that can never be processed never blocks the ones behind it."""
    while True:
        if taken is not None:
            raw, taken, clear = taken.envelope, None, False
        else:
            if not clear:
                customer = await repo.lock_customer(customer_id, chain_id)
                if customer is None or customer.in_flight is not None:
                    return
            clear = False
            raw = await repo.unpark_next(customer_id)
        if raw is None:
            return
        env = Envelope.model_validate(raw)
        try:
            cmd = parse_payload(env)
        except Exception:  # it was valid when parked; a schema change must not block the queue
            log.exception("parked message %s can no longer be parsed; refused", env.message_id)
            await refuse_unparsable(emitter.for_message(env), repo, env)
            continue
        replay = emitter.for_message(env)
        try:
            async with repo.savepoint():
                await process_command(repo, replay, env, cmd)  # type: ignore[arg-type]
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("parked command %s failed; it is refused", env.message_id)
            await refuse_failed_command(
                replay,
                repo,
                cmd,  # type: ignore[arg-type]
                reason="parked_command",
                detail=f"the operation failed: {type(exc).__name__}",
            )


async def refuse_failed_command(
    emitter: Emitter, repo: Repository, cmd: Command, *, reason: str, detail: str
) -> None:
    """A command that failed for good before it recorded anything: refused as
    `operation_failed`, unless it was recorded or answered before (then that answer stands)."""
    operation_id, kind = identity(cmd)
    await _refuse_as_failed(
        emitter, repo, operation_id, kind, cmd.chain_id, customer_of(cmd), reason, detail
    )


async def _refuse_as_failed(
    emitter: Emitter,
    repo: Repository,
    operation_id: uuid.UUID,
    kind: OperationKind,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    reason: str,
    detail: str,
) -> None:
    """Refuse the operation as `operation_failed` and count it (`reason`: the metric's label),
    unless it was recorded or answered before (then that answer stands)."""
    if kind is not OperationKind.REVOKE_DISCOUNT and await repo.operation_known(
        chain_id, operation_id, kind.value
    ):
        return
    await refuse(
        repo,
        emitter,
        operation_id=operation_id,
        kind=kind,
        chain_id=chain_id,
        customer_id=customer_id,
        code=RefusalCode.OPERATION_FAILED,
        detail=detail,
    )
    metrics.OPERATIONS_FAILED.labels("credit", kind.value, reason).inc()


#: command type -> (operation kind, the payload field naming the operation)
_IDENTITY_FIELD = {
    RecordSale.TYPE: (OperationKind.SALE, "sale_id"),
    RecordDebtPayment.TYPE: (OperationKind.DEBT_PAYMENT, "payment_id"),
    RecordAdvance.TYPE: (OperationKind.ADVANCE, "payment_id"),
    RecordRefund.TYPE: (OperationKind.REFUND, "refund_id"),
    RecordReturn.TYPE: (OperationKind.RETURN, "return_id"),
    RevokeDiscount.TYPE: (OperationKind.REVOKE_DISCOUNT, "sale_id"),
}


async def refuse_unparsable(emitter: Emitter, repo: Repository, env: Envelope) -> None:
    """A parked command that no longer parses is still answered, from the raw fields that name
    its operation (dropped with a log line only when even those are missing)."""
    kind_field = _IDENTITY_FIELD.get(env.type)
    payload = env.payload
    try:
        assert kind_field is not None
        kind, field_name = kind_field
        operation_id = uuid.UUID(str(payload[field_name]))
        chain_id = uuid.UUID(str(payload["chain_id"]))
        raw_customer = payload.get("customer_id") or (payload.get("customer") or {}).get(
            "customer_id"
        )
        customer_id = uuid.UUID(str(raw_customer)) if raw_customer else None
    except (AssertionError, KeyError, ValueError, TypeError, AttributeError):
        log.error("parked message %s names no operation; dropped", env.message_id)
        return
    detail = "the operation failed: its command can no longer be read"
    await _refuse_as_failed(
        emitter, repo, operation_id, kind, chain_id, customer_id, "parked_command", detail
    )


async def fail_operation(
    repo: Repository, emitter: Emitter, op: Any, *, reason: str, detail: str
) -> None:
    """End a pending operation that failed for good (the caller holds the customer's lock and
    drains the parked commands after): its entries are voided, it is refused as
    `operation_failed`, and loyalty is asked to undo whatever it applied of it."""
    customer_id: uuid.UUID = op.customer_id
    kind = OperationKind(op.kind)
    await repo.finish_operation(op.chain_id, op.operation_id, "voided")
    await repo.update_customer(customer_id, in_flight=None)
    answering = emitter.with_correlation(op.correlation_id)
    await refuse(
        repo,
        answering,
        operation_id=answered_id(op),
        kind=kind,
        chain_id=op.chain_id,
        customer_id=customer_id,
        code=RefusalCode.OPERATION_FAILED,
        detail=detail,
    )
    # after the operation's ApplyBonuses in the outbox, on the same key: loyalty sees the two
    # in that order, whether it applied the first or not
    await answering.emit(
        LOYALTY_COMMANDS,
        VoidBonuses(
            operation_id=op.operation_id,
            operation_kind=BonusOperationKind(kind.value),
            chain_id=op.chain_id,
            customer_id=customer_id,
            reason=detail,
            requested_at=datetime.now(UTC),
        ),
        key=str(customer_id),
    )
    metrics.OPERATIONS_FAILED.labels("credit", kind.value, reason).inc()
    log.warning(
        "%s %s failed for good (%s): refused as operation_failed, loyalty asked to undo it",
        kind.value,
        op.operation_id,
        detail,
        extra={
            "fields": {
                "chain_id": str(op.chain_id),
                "operation_id": str(op.operation_id),
                "reason": reason,
            }
        },
    )


# --------------------------------------------------------------------------- dead letters


async def command_dead_lettered(ctx: MessageContext, cmd: Command, reason: str) -> None:
    """A command that can never be processed is refused rather than left unanswered."""
    await refuse_failed_command(
        Emitter.caused_by(ctx.db, ctx.envelope),
        Repository(ctx.db),
        cmd,
        reason="dead_letter",
        detail=f"the operation failed: {reason}"[:500],
    )


async def answer_dead_lettered(
    ctx: MessageContext, answer: BonusesApplied | BonusesRefused, reason: str
) -> None:
    """Loyalty's answer could not be processed: the operation fails, the customer goes on."""
    repo = Repository(ctx.db)
    await repo.lock_customer(answer.customer_id, answer.chain_id)
    op = await repo.pending_operation(answer.chain_id, answer.operation_id)
    if op is None:
        return
    emitter = Emitter.caused_by(ctx.db, ctx.envelope)
    await fail_operation(
        repo, emitter, op, reason="dead_letter", detail=f"the operation failed: {reason}"[:500]
    )
    await drain_parked(repo, answer.customer_id, answer.chain_id, emitter, clear=True)


def sale_owed_map(ledger: Ledger) -> dict[uuid.UUID, Decimal]:
    return {s.sale_id: owed for s, owed in ledger.open_sales()}


async def execute(
    repo: Repository,
    emitter: Emitter,
    cmd: Command,
    locked: CustomerRow | None,
    ledger: Ledger,
    *,
    operation_id: uuid.UUID | None = None,
) -> None:
    """Run the ledger operation and record it (pending, or confirmed when loyalty has no part).

    `locked`: the customer's row as `process_command` locked it (None: anonymous); `ledger`:
    the customer's (or the returned anonymous sale's) ledger as it read it; `operation_id`:
    the operation's id when it is not the command's (a requested revocation's attempt)."""
    customer_id = customer_of(cmd)
    settings = cmd.settings
    owed_before = sale_owed_map(ledger)
    command_id, kind = identity(cmd)
    if operation_id is None:
        operation_id = command_id
    step = Step(
        cmd=cmd,
        ledger=ledger,
        operation_id=operation_id,
        customer_id=customer_id,
        cached_bonus=locked.bonus_balance if locked is not None else Decimal(0),
    )
    decision = decide(step)
    bonus = decision.bonus

    settled = settled_sales(owed_before, ledger)
    meta = {"settled": settled, "timezone": settings.timezone, "minor_units": settings.minor_units}
    # loyalty's command, or the outcome: emitted first, so that the write below carries it
    if bonus is not None:
        assert customer_id is not None
        await emitter.emit(LOYALTY_COMMANDS, bonus, key=str(customer_id))
    else:
        await emitter.emit(CREDIT_EVENTS, decision.event, key=str(customer_id or operation_id))
    await repo.record_operation(
        operation_record(step, decision, kind, meta=meta, correlation_id=emitter.correlation_id)
    )
    if bonus is None and customer_id is not None:
        await emit_settled(repo, emitter, cmd.chain_id, customer_id, settled, meta)


def settled_sales(owed_before: dict[uuid.UUID, Decimal], ledger: Ledger) -> list[str]:
    """The sales the operation paid off: they owed before it and owe nothing now."""
    return [str(s) for s, before in owed_before.items() if before > 0 and ledger.sale_owed(s) <= 0]


def operation_record(
    step: Step,
    decision: Decision,
    kind: OperationKind,
    *,
    meta: dict[str, Any],
    correlation_id: uuid.UUID,
) -> OperationRecord:
    """The sale, its entries, the operation and the customer's row (the operation in flight
    while loyalty answers, else the balances it leaves), written in one statement with the
    message emitted before it."""
    outcome, event, customer_id = decision.outcome, decision.event, step.customer_id
    pending = decision.bonus is not None
    return OperationRecord(
        operation_id=step.operation_id,
        kind=kind.value,
        chain_id=step.cmd.chain_id,
        customer_id=customer_id,
        status="pending" if pending else "confirmed",
        outcome_type=event.TYPE,
        outcome=event.model_dump(mode="json"),
        meta=meta,
        correlation_id=correlation_id,
        sale=decision.sale,
        entries=outcome.entries,
        in_flight=step.operation_id if pending else None,
        debt=None if pending or customer_id is None else outcome.debt_after,
        advance=None if pending or customer_id is None else outcome.advance_after,
        sale_settled=decision.sale is not None
        and step.ledger.sale_owed(decision.sale.sale_id) <= 0,
    )


async def confirm(repo: Repository, emitter: Emitter, op: Any, applied: BonusesApplied) -> Unparked:
    """Loyalty applied the bonuses: the operation (`op`, already ended as confirmed by
    `lock_customer_and_claim_pending`) becomes effective and is published. The customer's next
    parked command is taken off the queue in the same statement as their balances: the caller
    replays it."""
    meta: dict[str, Any] = op.meta or {}
    minor_units = int(meta.get("minor_units", 2))
    payload = oc.fill_bonus(op.outcome_type, op.outcome, applied, minor_units)
    event = OUTCOME_TYPES[op.outcome_type].model_validate(payload)
    balances = payload.get("customer_balances") or {}
    values: dict[str, Any] = {"bonus_balance": applied.balance_after}
    if balances:
        values["debt"] = Decimal(balances["debt"])
        values["advance"] = Decimal(balances["advance"])
    # the outcome first: the customer's write below carries it
    await emitter.emit(CREDIT_EVENTS, event, key=str(applied.customer_id))
    taken = await repo.end_in_flight(applied.customer_id, **values)
    await emit_settled(
        repo, emitter, op.chain_id, applied.customer_id, meta.get("settled", []), meta
    )
    return taken


async def emit_settled(
    repo: Repository,
    emitter: Emitter,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    settled: list[str],
    meta: dict[str, Any],
) -> None:
    """``SaleSettled`` for every sale whose debt this (confirmed) operation brought to zero;
    commands stop reading those sales (`Repository.mark_settled`)."""
    if not settled:
        return
    await repo.mark_settled(chain_id, [uuid.UUID(raw) for raw in settled])
    ledger, _ = await repo.load_for_command(
        chain_id=chain_id, customer_id=customer_id, minor_units=int(meta.get("minor_units", 2))
    )
    now = datetime.now(UTC)
    today = local_date(now, meta.get("timezone", "UTC"))
    m = oc.Money(ledger.minor_units)
    overdue_left = m(ledger.overdue_amount(today))
    for raw in settled:
        sale_id = uuid.UUID(raw)
        mark = await repo.settle_mark(chain_id, sale_id)
        if mark is False:
            continue  # the scan published it already
        await emitter.emit(
            CREDIT_EVENTS,
            SaleSettled(
                sale_id=sale_id,
                chain_id=chain_id,
                customer_id=customer_id,
                was_overdue=mark is True,
                customer_overdue_amount=overdue_left,
                settled_at=now,
            ),
            key=str(customer_id),
        )


__all__ = [
    "HANDLERS",
    "IGNORED",
    "ON_DEAD_LETTER",
    "CreditMode",
    "answer_dead_lettered",
    "command_dead_lettered",
    "fail_operation",
    "handle_bonus_balance",
    "handle_bonuses_applied",
    "handle_bonuses_refused",
    "handle_bonuses_voided",
    "handle_chain_settings",
    "handle_command",
    "process_command",
]


# --------------------------------------------------------------------------- the handler map

HANDLERS: dict[type[BaseModel], Handler] = {
    RecordSale: handle_command,
    RecordDebtPayment: handle_command,
    RecordAdvance: handle_command,
    RecordRefund: handle_command,
    RecordReturn: handle_command,
    RevokeDiscount: handle_command,
    BonusesApplied: handle_bonuses_applied,
    BonusesRefused: handle_bonuses_refused,
    BonusMovementRecorded: handle_bonus_balance,
    PaymentBonusCancelled: handle_bonus_balance,
    BonusesVoided: handle_bonuses_voided,
    ChainRegistered: handle_chain_settings,
    ChainSettingsChanged: handle_chain_settings,
}

#: Messages of handled models that have no effect here, passed over without a transaction.
IGNORED: dict[type[BaseModel], Callable[[Any], bool]] = {
    BonusMovementRecorded: _movement_of_an_operation,
}

#: Loyalty's answers keep no inbox row: their handlers end an operation only while it is
#: pending (`lock_customer_and_claim_pending`), so an answer delivered again changes nothing
#: (`test_an_answer_delivered_again_changes_nothing`), and confirming a sale costs no inbox
#: statement. Nor do the commands but a revocation: `process_command` finds an operation it
#: has seen, accepted or refused, with the ledger's read under the customer's lock and passes
#: it over, and a copy that finds the customer busy is parked and passed over when replayed
#: (`test_a_command_delivered_again_changes_nothing`). A revocation may be asked again (it is
#: answered `already_revoked`), so a copy of the same message must be kept out by the inbox.
#: The cached balance's events keep theirs: one delivered again would set an older balance.
NO_INBOX_FOR: frozenset[type[BaseModel]] = frozenset(
    {
        BonusesApplied,
        BonusesRefused,
        RecordSale,
        RecordDebtPayment,
        RecordAdvance,
        RecordRefund,
        RecordReturn,
    }
)

#: A command or an answer that is dead-lettered still ends its operation (refused as
#: operation_failed), so nothing waits for it for ever.
ON_DEAD_LETTER: dict[type[BaseModel], DeadLetterHandler] = {
    RecordSale: command_dead_lettered,
    RecordDebtPayment: command_dead_lettered,
    RecordAdvance: command_dead_lettered,
    RecordRefund: command_dead_lettered,
    RecordReturn: command_dead_lettered,
    RevokeDiscount: command_dead_lettered,
    BonusesApplied: answer_dead_lettered,
    BonusesRefused: answer_dead_lettered,
}
