"""Builders for tests of the credit service: sales, lines and payments with readable defaults."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from credit.domain.model import Line, Method, Payment, Sale, due_date_for

DAY0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
STORE = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def D(value: str | int) -> Decimal:
    return Decimal(str(value))


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


def local(n: int) -> date:
    return day(n).date()


def line(
    line_no: int,
    amount: str,
    *,
    discount: str = "0.00",
    name: str | None = None,
    barcode: str | None = None,
    quantity: str = "1",
) -> Line:
    gross = D(amount) + D(discount)
    qty = D(quantity)
    return Line(
        line_no=line_no,
        name=name or f"item {line_no}",
        quantity=qty,
        unit_price=(gross / qty).quantize(D("0.01")),
        discount=D(discount),
        amount=D(amount),
        barcode=barcode,
    )


def pay(method: str, amount: str) -> Payment:
    return Payment(uuid.uuid4(), Method(method), D(amount))


def sale(
    lines: list[Line],
    payments: list[Payment],
    *,
    at: int = 0,
    delay: int = 30,
    sale_id: uuid.UUID | None = None,
) -> Sale:
    return Sale(
        sale_id=sale_id or uuid.uuid4(),
        store_id=STORE,
        sold_at=day(at),
        local_date=local(at),
        due_date=due_date_for(local(at), delay),
        lines=tuple(lines),
        payments=tuple(payments),
    )
