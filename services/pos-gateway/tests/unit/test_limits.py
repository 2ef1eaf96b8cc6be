"""The API's limits (api.md, Conventions, "Limits"): decimal strings of ASCII digits, money below
10^12, quantities below 10^6 with at most 3 decimals, line amounts and totals below 10^12 - each
refused as `422 validation_error` naming the field, so no input that passes validation can
overflow a NUMERIC column later (it was a 500, issue 13 findings 2 and 5)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts.enums import PaymentMethod
from pos_gateway.domain.errors import ValidationFailed
from pos_gateway.domain.limits import MONEY_LIMIT, parse_request_decimal
from pos_gateway.domain.sales import PaymentIn, price_sale
from pos_gateway.schemas import SaleLineIn

D = Decimal
SALE = {
    "lines": [{"name": "Dress", "quantity": "1", "unit_price": "60.00"}],
    "payments": [{"method": "cash", "amount": "60.00"}],
}
#: "10" in Arabic-Indic, fullwidth, Devanagari, mathematical bold, Persian and Thai digits
OTHER_SCRIPTS_TEN = [
    "\u0661\u0660",
    "\uff11\uff10",
    "\u0967\u0966",
    "\U0001d7cf\U0001d7ce",
    "\u06f1\u06f0",
    "\u0e51\u0e50",
]


def _sale(**line: str) -> dict[str, Any]:
    body = json.loads(json.dumps(SALE))
    body["lines"][0].update(line)
    return body


async def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    return [e["field"] for e in body["errors"]]


@pytest.mark.parametrize("ten", OTHER_SCRIPTS_TEN)
async def test_money_and_quantities_in_other_scripts_digits_are_refused(
    client: httpx.AsyncClient, ten: str
) -> None:
    assert await _fields(await client.post("/sales", json=_sale(quantity=ten))) == [
        "lines.0.quantity"
    ]
    assert await _fields(await client.post("/sales", json=_sale(unit_price=f"{ten}.00"))) == [
        "lines.0.unit_price"
    ]
    body = {**SALE, "payments": [{"method": "cash", "amount": ten}]}
    assert await _fields(await client.post("/sales", json=body)) == ["payments.0.amount"]
    customer = {"name": "Ana", "phone": "1", "credit_limit": ten}
    assert await _fields(await client.post("/customers", json=customer)) == ["credit_limit"]


@pytest.mark.parametrize(
    "value",
    [
        "+10.00",
        "-10.00",
        " 10.00",
        "10.00 ",
        "1e3",
        "10,00",
        "1.2.3",
        ".5",
        "5.",
        "",
        "0x10",
        "1_000",
    ],
)
async def test_signs_spaces_exponents_and_other_shapes_are_refused(
    client: httpx.AsyncClient, value: str
) -> None:
    assert await _fields(await client.post("/sales", json=_sale(unit_price=value))) == [
        "lines.0.unit_price"
    ]


async def test_the_amounts_of_issue_13_are_refused_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    assert await _fields(await client.post("/sales", json=_sale(quantity="999999999999999"))) == [
        "lines.0.quantity"
    ]
    huge = await client.post("/sales", json=_sale(unit_price="999999999999999.99"))
    assert await _fields(huge) == ["lines.0.unit_price"]
    limit = {"name": "Ana", "phone": "1", "credit_limit": "999999999999999.99"}
    assert await _fields(await client.post("/customers", json=limit)) == ["credit_limit"]
    take = {"kind": "take_money", "method": "cash", "amount": "99999999999999.99"}
    assert await _fields(await client.post("/payments", json=take)) == ["amount"]


async def test_money_just_below_the_limit_passes_and_the_limit_itself_does_not(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.post(
        "/customers", json={"name": "A", "phone": "1", "credit_limit": "999999999999.99"}
    )
    assert ok.json() == {"credit_limit": "999999999999.99"}
    at = await client.post(
        "/customers", json={"name": "A", "phone": "1", "credit_limit": "1000000000000"}
    )
    assert await _fields(at) == ["credit_limit"]


async def test_quantities_are_below_a_million_with_at_most_three_decimals(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/sales", json=_sale(quantity="999999.999"))).status_code == 200
    assert await _fields(await client.post("/sales", json=_sale(quantity="1000000"))) == [
        "lines.0.quantity"
    ]
    assert await _fields(await client.post("/sales", json=_sale(quantity="0.0001"))) == [
        "lines.0.quantity"
    ]
    returned = {"lines": [{"line_no": 1, "quantity": "1.2345"}], "refund": "cash"}
    assert await _fields(await client.post("/returns", json=returned)) == ["lines.0.quantity"]


def test_a_positive_amount_may_not_be_zero_and_leading_zeros_are_only_digits() -> None:
    def parse(value: str) -> Decimal:
        return parse_request_decimal(
            value, what="money", max_scale=2, below=MONEY_LIMIT, positive=True
        )

    assert parse("0007.50") == D("7.50")
    for zero in ("0", "0.00", "000"):
        with pytest.raises(ValueError, match="greater than 0"):
            parse(zero)
    with pytest.raises(ValueError, match="decimal string"):
        parse("1" + "0" * 40)  # longer than any value below the limit needs


def _line(name: str, quantity: str, unit_price: str) -> SaleLineIn:
    return SaleLineIn.model_validate({"name": name, "quantity": quantity, "unit_price": unit_price})


def _price(lines: list[SaleLineIn], payments: list[PaymentIn]) -> list[str]:
    try:
        price_sale(lines, payments, None, 2)
    except ValidationFailed as exc:
        return [e["field"] for e in exc.errors]
    return []


def test_a_line_whose_amount_reaches_10_to_the_12_is_refused_naming_the_line() -> None:
    line = _line("Gold", "999999.999", "999999999999.99")
    cash = [PaymentIn(PaymentMethod.CASH, D("1.00"))]
    assert _price([line], cash) == ["lines.0"]


def test_lines_whose_sum_reaches_10_to_the_12_are_refused_naming_the_lines() -> None:
    half = _line("Gold", "1", "500000000000.00")
    cash = [PaymentIn(PaymentMethod.CASH, D("999999999999.99"))]
    assert _price([half, half], cash) == ["lines"]
    assert _price([half], [PaymentIn(PaymentMethod.CASH, D("500000000000.00"))]) == []


def test_payments_whose_sum_reaches_10_to_the_12_are_refused_naming_the_payments() -> None:
    cheap = _line("Pin", "1", "1.00")
    cash = [PaymentIn(PaymentMethod.CASH, D("999999999999.99"))] * 2
    assert _price([cheap], cash) == ["payments"]


async def test_a_line_number_beyond_any_sale_is_refused(client: httpx.AsyncClient) -> None:
    returned = {"lines": [{"line_no": 2**70, "quantity": "1"}], "refund": "cash"}
    assert await _fields(await client.post("/returns", json=returned)) == ["lines.0.line_no"]
    take = {
        "kind": "take_money",
        "method": "cash",
        "amount": "1.00",
        "allocations": [{"sale_id": str(uuid.uuid4()), "line_no": 1001, "amount": "1.00"}],
    }
    assert await _fields(await client.post("/payments", json=take)) == ["allocations.0.line_no"]
