"""Handlers of what loyalty consumes: credit's ApplyBonuses and VoidBonuses, the gateway's
CancelPaymentBonus, and the chain settings of master data.

Each runs inside the consumer's batch transaction (servicekit; a failing message is retried
alone in a savepoint of its own), takes the
customer's row lock first, and writes its answer and one ``BonusMovementRecorded`` per new
ledger movement to the outbox in the same transaction. A repeated operation (same operation
id in another message) changes nothing and gets the answer it got the first time.

An operation that fails for good here (its ``ApplyBonuses`` dead-lettered) is answered
``BonusesRefused(operation_failed)`` and recorded voided, so credit ends it at once and a copy
of the command arriving later is refused the same way. One that credit gave up is voided on
``VoidBonuses``: whatever was applied of it is undone (``BonusAccount.void``) and
``BonusesVoided`` names the published movements that no longer count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel

from contracts.credit.v1 import ApplyBonuses, VoidBonuses
from contracts.enums import BonusMovementKind
from contracts.gateway.v1 import (
    CancelPaymentBonus,
    ChainRegistered,
    ChainSettingsChanged,
    ChainSettingsSnapshot,
)
from contracts.loyalty.v1 import (
    BonusCancellationRefused,
    BonusesApplied,
    BonusesRefused,
    BonusesVoided,
    BonusMovementRecorded,
    PaymentBonus,
    PaymentBonusCancelled,
)
from contracts.money import quantize_money
from contracts.topics import LOYALTY_EVENTS
from loyalty import metrics
from loyalty.adapters import repository as repo
from loyalty.domain.errors import InvalidOperation
from loyalty.domain.model import (
    PUBLISHED_KINDS,
    AccrualBase,
    Applied,
    BonusAccount,
    BonusOperation,
    Movement,
    Refused,
)
from servicekit import metrics as kit_metrics
from servicekit.consumer import DeadLetterHandler, Handler, MessageContext, PermanentError
from servicekit.sql import Db

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def movement_event(chain_id: UUID, customer_id: UUID, m: Movement) -> BonusMovementRecorded:
    """The event of one ledger movement, for statements and statistics."""
    return BonusMovementRecorded(
        movement_id=m.movement_id,
        chain_id=chain_id,
        customer_id=customer_id,
        kind=BonusMovementKind(m.kind.value),
        amount=m.amount,
        store_id=m.store_id,
        payment_id=m.payment_id,
        sale_id=m.sale_id,
        operation_id=m.operation_id,
        at=m.at,
        balance_after=m.balance_after,
    )


def to_operation(cmd: ApplyBonuses) -> BonusOperation:
    """The domain's view of credit's command."""
    return BonusOperation(
        operation_id=cmd.operation_id,
        kind=cmd.operation_kind.value,
        store_id=cmd.store_id,
        sale_id=cmd.sale_id,
        at=cmd.occurred_at,
        accrual_on=cmd.bonus_accrual,
        rate_percent=cmd.bonus_rate_percent,
        minor_units=cmd.minor_units,
        spend=cmd.spend,
        accrual_bases=tuple(
            AccrualBase(b.payment_id, b.method.value, b.base_amount) for b in cmd.accrual_bases
        ),
        restore_up_to=cmd.restore_up_to,
        reverse_bases=tuple(
            AccrualBase(b.payment_id, b.method.value, b.base_amount) for b in cmd.reverse_bases
        ),
    )


async def _remember_snapshot(db: Db, cmd: ApplyBonuses) -> int | None:
    """A chain whose master data is not seen yet: the command's snapshot of its settings is
    kept (master data overrides it later), and its expiry applies."""
    await repo.save_chain_settings(
        db,
        chain_id=cmd.chain_id,
        bonus_expiry_days=cmd.bonus_expiry_days,
        bonus_rate_percent=cmd.bonus_rate_percent,
        minor_units=cmd.minor_units,
        timezone=None,
        changed_at=None,
    )
    return cmd.bonus_expiry_days


async def _save_chain_settings(
    db: Db, chain_id: UUID, settings: ChainSettingsSnapshot, at: datetime
) -> None:
    """What loyalty keeps of a chain's settings, as of `at` (master data)."""
    await repo.save_chain_settings(
        db,
        chain_id=chain_id,
        bonus_expiry_days=settings.bonus_expiry_days,
        bonus_rate_percent=settings.bonus_rate_percent,
        minor_units=settings.minor_units,
        timezone=settings.timezone,
        changed_at=at,
    )


async def _remember_voided(
    db: Db, cmd: ApplyBonuses | VoidBonuses, detail: str, balance: Decimal
) -> BonusesRefused:
    """The operation recorded voided, with the answer any copy of it gets from now on: refused
    as operation_failed."""
    refusal = BonusesRefused(
        operation_id=cmd.operation_id,
        operation_kind=cmd.operation_kind,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        code="operation_failed",
        detail=detail[:500],
        balance=balance,
    )
    await repo.void_operation(
        db,
        operation_id=cmd.operation_id,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        operation_kind=cmd.operation_kind.value,
        answer_type=refusal.TYPE,
        answer=refusal.model_dump(mode="json"),
    )
    return refusal


async def _account_of(
    db: Db, chain_id: UUID, customer_id: UUID
) -> tuple[repo.ChainSettings | None, int, BonusAccount]:
    """The chain's settings (None until its master data is seen), its minor units and the
    customer's account, under the customer's row lock."""
    chain = await repo.get_chain_settings(db, chain_id)
    minor = chain.minor_units if chain is not None else repo.DEFAULT_MINOR_UNITS
    account = await repo.load_account(db, chain_id, customer_id, minor_units=minor)
    assert account is not None  # only skip_locked loads can come back empty
    return chain, minor, account


def _cancelled(
    cmd: CancelPaymentBonus, cancelled: Decimal, balance: Decimal, *, already: bool, at: datetime
) -> PaymentBonusCancelled:
    """The answer to a cancellation, the first time (`already` false) and to every copy."""
    return PaymentBonusCancelled(
        payment_id=cmd.payment_id,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        cancelled=cancelled,
        balance_after=balance,
        already=already,
        cancelled_at=at,
    )


def answer_for(
    cmd: ApplyBonuses, result: Applied | Refused
) -> tuple[BonusesApplied | BonusesRefused, str]:
    """Loyalty's answer to credit, and the outcome's name ("applied" / "refused")."""
    if isinstance(result, Applied):
        minor = cmd.minor_units
        return BonusesApplied(
            operation_id=cmd.operation_id,
            operation_kind=cmd.operation_kind,
            chain_id=cmd.chain_id,
            customer_id=cmd.customer_id,
            spent=result.spent,
            accrued=quantize_money(result.accrued, minor),
            accrued_by_payment=[
                PaymentBonus(payment_id=a.payment_id, amount=a.accrued) for a in result.accruals
            ],
            restored=result.restored,
            reversed=quantize_money(result.reversed, minor),
            reversed_by_payment=[
                PaymentBonus(payment_id=r.payment_id, amount=r.amount) for r in result.reversals
            ],
            balance_after=result.balance_after,
        ), "applied"
    # the refusal itself leaves the ledger untouched; only expiries that were due anyway
    # (recorded before the operation) may have been written
    return BonusesRefused(
        operation_id=cmd.operation_id,
        operation_kind=cmd.operation_kind,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        code=result.code,  # type: ignore[arg-type]
        detail=result.detail,
        balance=result.balance,
    ), "refused"


_ANSWERS: dict[str, type[BonusesApplied] | type[BonusesRefused]] = {
    BonusesApplied.TYPE: BonusesApplied,
    BonusesRefused.TYPE: BonusesRefused,
}


async def _answer_again(
    ctx: MessageContext, cmd: ApplyBonuses, stored: repo.StoredOperation
) -> None:
    """A repeated operation changes nothing and gets the answer it got the first time; one
    applied for another customer is an error."""
    if (stored.chain_id, stored.customer_id) != (cmd.chain_id, cmd.customer_id):
        raise PermanentError(f"operation {cmd.operation_id} was applied for another customer")
    metrics.OPERATIONS.labels("repeated").inc()
    await ctx.emit(
        LOYALTY_EVENTS,
        _ANSWERS[stored.answer_type].model_validate(stored.answer),
        key=str(cmd.customer_id),
    )


async def _apply_operation(db: Db, cmd: ApplyBonuses, account: BonusAccount) -> Applied | Refused:
    """The operation on the account, with the histories it reads: those of the payments it
    reverses, and the sale's when it may restore spent bonus."""
    minor = cmd.minor_units
    payments = await repo.load_payment_histories(
        db,
        cmd.chain_id,
        cmd.customer_id,
        [b.payment_id for b in cmd.reverse_bases],
        minor_units=minor,
    )
    sale = None
    if cmd.sale_id is not None and cmd.restore_up_to > 0:
        sale = await repo.load_sale_history(
            db, cmd.chain_id, cmd.customer_id, cmd.sale_id, minor_units=minor
        )
    try:
        return account.apply(to_operation(cmd), payments=payments, sale=sale)
    except InvalidOperation as exc:
        raise PermanentError(str(exc)) from exc


@dataclass
class LoyaltyHandlers:
    """The consumer's handlers; the clock is injectable so expiry can be tested."""

    clock: Clock = field(default=utc_now)

    async def apply_bonuses(self, ctx: MessageContext, cmd: ApplyBonuses) -> None:
        db, key = ctx.db, str(cmd.customer_id)
        minor = cmd.minor_units
        # checked under the customer's lock: a concurrent copy of the operation waits for it
        state = await repo.load_for_apply(
            db,
            cmd.chain_id,
            cmd.customer_id,
            cmd.operation_id,
            [b.payment_id for b in cmd.accrual_bases],
            minor_units=minor,
        )
        account, stored, already = state.account, state.stored, state.already_accrued
        expiry_days = (
            state.bonus_expiry_days if state.chain_known else await _remember_snapshot(db, cmd)
        )
        if stored is not None:
            await _answer_again(ctx, cmd, stored)
            return
        if already:
            raise PermanentError(f"payments {already} already accrued in another operation")

        account.expire_due(self.clock(), expiry_days)
        result = await _apply_operation(db, cmd, account)

        movements = list(account.movements)
        answer, outcome = answer_for(cmd, result)
        applied = result if isinstance(result, Applied) else None
        # the movements and the answer first: the account's write below carries them
        await self._emit_movements(ctx, cmd.chain_id, cmd.customer_id, movements)
        await ctx.emit(LOYALTY_EVENTS, answer, key=key)
        await repo.save_account(
            db,
            cmd.chain_id,
            account,
            repo.OperationWrites(
                operation_id=cmd.operation_id,
                operation_kind=cmd.operation_kind.value,
                outcome=outcome,
                answer_type=answer.TYPE,
                answer=answer.model_dump_json(),
                accruals=applied.accruals if applied else (),
                reversals=applied.reversals if applied else (),
                reversals_at=cmd.occurred_at,
            ),
        )
        metrics.OPERATIONS.labels(outcome).inc()

    async def cancel_payment_bonus(self, ctx: MessageContext, cmd: CancelPaymentBonus) -> None:
        db, key = ctx.db, str(cmd.customer_id)
        chain, minor, account = await _account_of(db, cmd.chain_id, cmd.customer_id)
        expiry_days = chain.bonus_expiry_days if chain is not None else None
        earlier = await repo.find_cancellation(db, cmd.chain_id, cmd.payment_id)
        if earlier is not None:
            if (earlier.chain_id, earlier.customer_id) != (cmd.chain_id, cmd.customer_id):
                await self._refuse_cancellation(ctx, cmd)
                return
            answer = _cancelled(
                cmd,
                quantize_money(earlier.cancelled, minor),
                account.balance,
                already=True,
                at=earlier.cancelled_at,
            )
            await ctx.emit(LOYALTY_EVENTS, answer, key=key)
            return
        histories = await repo.load_payment_histories(
            db, cmd.chain_id, cmd.customer_id, [cmd.payment_id], minor_units=minor
        )
        history = histories.get(cmd.payment_id)
        if history is None:
            await self._refuse_cancellation(ctx, cmd)
            return

        account.expire_due(self.clock(), expiry_days)
        cancellation = account.cancel_accrual(history, at=cmd.requested_at)
        movements = list(account.movements)
        await repo.save_account(db, cmd.chain_id, account)
        await repo.save_cancellation(
            db,
            payment_id=cmd.payment_id,
            chain_id=cmd.chain_id,
            customer_id=cmd.customer_id,
            cancelled=cancellation.amount,
            cancelled_at=cmd.requested_at,
        )
        metrics.CANCELLATIONS.inc()
        await self._emit_movements(ctx, cmd.chain_id, cmd.customer_id, movements)
        answer = _cancelled(
            cmd, cancellation.amount, account.balance, already=False, at=cmd.requested_at
        )
        await ctx.emit(LOYALTY_EVENTS, answer, key=key)

    async def void_bonuses(self, ctx: MessageContext, cmd: VoidBonuses) -> None:
        """Undo whatever was applied of an operation credit gave up; remember it voided."""
        db, key = ctx.db, str(cmd.customer_id)
        _, minor, account = await _account_of(db, cmd.chain_id, cmd.customer_id)
        stored = await repo.find_operation(db, cmd.chain_id, cmd.operation_id)
        if stored is not None and stored.customer_id != cmd.customer_id:
            raise PermanentError(f"operation {cmd.operation_id} belongs to another customer")
        if stored is not None and stored.outcome == "voided":
            return  # voided before: nothing more to undo, and it was answered then
        voided = []
        if stored is not None and stored.outcome == "applied":
            voided = await repo.movements_to_void(
                db, cmd.chain_id, cmd.customer_id, cmd.operation_id
            )
            # the operation's own business time: what it spent comes back as of then
            at = voided[0].at if voided else cmd.requested_at
            account.void(
                operation_id=cmd.operation_id,
                own_lots=[
                    m.lot_id
                    for m in voided
                    if m.lot_id is not None and m.kind.value in ("accrued", "restored")
                ],
                net=sum((m.signed_amount for m in voided), quantize_money(Decimal(0), minor)),
                at=at,
            )
            await repo.save_account(db, cmd.chain_id, account)
        await _remember_voided(db, cmd, f"the operation was voided: {cmd.reason}", account.balance)
        metrics.OPERATIONS.labels("voided").inc()
        await ctx.emit(
            LOYALTY_EVENTS,
            BonusesVoided(
                operation_id=cmd.operation_id,
                operation_kind=cmd.operation_kind,
                chain_id=cmd.chain_id,
                customer_id=cmd.customer_id,
                movement_ids=[m.movement_id for m in voided],
                balance_after=account.balance,
                voided_at=self.clock(),
            ),
            key=key,
        )

    async def apply_bonuses_dead_lettered(
        self, ctx: MessageContext, cmd: ApplyBonuses, reason: str
    ) -> None:
        """An ApplyBonuses that can never be processed: refused as operation_failed (credit
        ends the operation at once) and remembered voided, so a copy of it is refused too."""
        db = ctx.db
        if await repo.find_operation(db, cmd.chain_id, cmd.operation_id) is not None:
            return  # answered before: that answer stands
        balance = await repo.lock_customer(db, cmd.chain_id, cmd.customer_id)
        refusal = await _remember_voided(
            db,
            cmd,
            f"loyalty could not process the operation: {reason}",
            quantize_money(balance[0] if balance else Decimal(0), cmd.minor_units),
        )
        kit_metrics.OPERATIONS_FAILED.labels(
            "loyalty", cmd.operation_kind.value, "dead_letter"
        ).inc()
        await ctx.emit(LOYALTY_EVENTS, refusal, key=str(cmd.customer_id))

    async def void_bonuses_dead_lettered(
        self, ctx: MessageContext, cmd: VoidBonuses, reason: str
    ) -> None:
        """Nothing can replace a failed undo: counted, so the alert says the bonus balance of
        this customer needs the dead letter re-driven (docs/operations.md)."""
        kit_metrics.OPERATIONS_FAILED.labels(
            "loyalty", cmd.operation_kind.value, "void_dead_letter"
        ).inc()

    async def chain_registered(self, ctx: MessageContext, event: ChainRegistered) -> None:
        await _save_chain_settings(ctx.db, event.chain_id, event.settings, event.registered_at)

    async def chain_settings_changed(
        self, ctx: MessageContext, event: ChainSettingsChanged
    ) -> None:
        await _save_chain_settings(ctx.db, event.chain_id, event.settings, event.changed_at)

    @staticmethod
    async def _refuse_cancellation(ctx: MessageContext, cmd: CancelPaymentBonus) -> None:
        await ctx.emit(
            LOYALTY_EVENTS,
            BonusCancellationRefused(
                payment_id=cmd.payment_id,
                chain_id=cmd.chain_id,
                customer_id=cmd.customer_id,
                code="not_found",
                detail=f"no bonus accrual is known for payment {cmd.payment_id}",
            ),
            key=str(cmd.customer_id),
        )

    @staticmethod
    async def _emit_movements(
        ctx: MessageContext, chain_id: UUID, customer_id: UUID, movements: Sequence[Movement]
    ) -> None:
        for m in movements:
            if m.kind not in PUBLISHED_KINDS:
                continue
            await ctx.emit(
                LOYALTY_EVENTS, movement_event(chain_id, customer_id, m), key=str(customer_id)
            )


# --------------------------------------------------------------------------- the handler map


def handler_map(handlers: LoyaltyHandlers) -> dict[type[BaseModel], Handler]:
    """Commands for loyalty, and master data for chain settings."""
    return {
        ApplyBonuses: handlers.apply_bonuses,
        VoidBonuses: handlers.void_bonuses,
        CancelPaymentBonus: handlers.cancel_payment_bonus,
        ChainRegistered: handlers.chain_registered,
        ChainSettingsChanged: handlers.chain_settings_changed,
    }


#: Commands that keep no inbox row (`Consumer.no_inbox_for`): `apply_bonuses` finds, under the
#: customer's lock, an operation it applied before and answers it again from what it stored,
#: so a copy delivered again (Kafka redelivers after a crash or a rebalance) changes nothing but
#: sends that answer once more, which credit passes over (its operation is no longer pending).
#: One statement fewer on every sale with a customer.
NO_INBOX_FOR: frozenset[type[BaseModel]] = frozenset({ApplyBonuses})


def dead_letter_map(handlers: LoyaltyHandlers) -> dict[type[BaseModel], DeadLetterHandler]:
    """An ApplyBonuses that can never be processed is answered operation_failed, so the
    operation ends at once instead of at credit's deadline."""
    return {
        ApplyBonuses: handlers.apply_bonuses_dead_lettered,
        VoidBonuses: handlers.void_bonuses_dead_lettered,
    }


#: the maps of the handlers on the real clock (the process's); tests pass their own clock to
#: `handler_map` and `dead_letter_map`
HANDLERS = handler_map(LoyaltyHandlers())
ON_DEAD_LETTER = dead_letter_map(LoyaltyHandlers())
