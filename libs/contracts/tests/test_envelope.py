"""The envelope goes to bytes and back unchanged; payloads are checked against the registry."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from contracts.credit.v1 import (
    Allocation,
    CustomerBalances,
    LineOwedChange,
    SaleCompleted,
    SaleLineOutcome,
    SalePaymentOutcome,
)
from contracts.deadletter.v1 import DeadLetter
from contracts.enums import CreditMode, PaymentMethod
from contracts.envelope import (
    Envelope,
    MessageTypeMismatch,
    UnknownMessageType,
    decode,
    encode,
    make_envelope,
    parse_payload,
    parse_payload_as,
)
from contracts.gateway.v1 import RecordSale
from contracts.loyalty.v1 import BonusesApplied

from .conftest import CHAIN, CUSTOMER


def test_an_envelope_survives_encode_and_decode(sale: RecordSale) -> None:
    correlation = uuid4()
    env = make_envelope(sale, chain_id=CHAIN, key=CUSTOMER, correlation_id=correlation)
    raw = encode(env)

    back = decode(raw)

    assert back == env
    assert back.type == "credit.RecordSale"
    assert back.schema_version == 1
    assert back.key == str(CUSTOMER)
    assert back.correlation_id == correlation
    assert back.causation_id is None
    assert parse_payload(back) == sale


def test_encoding_is_compact_json_with_money_as_strings(sale: RecordSale) -> None:
    raw = encode(make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4()))
    assert b": " not in raw
    assert b", " not in raw
    body = json.loads(raw)
    assert body["payload"]["total"] == "100.00"
    assert body["payload"]["lines"][1]["discount"] == "10.00"
    assert set(body) == {
        "message_id",
        "type",
        "schema_version",
        "occurred_at",
        "chain_id",
        "correlation_id",
        "causation_id",
        "key",
        "payload",
    }


def test_the_chain_id_is_taken_from_the_payload_when_not_given(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=None, key="k", correlation_id=uuid4())
    assert env.chain_id == CHAIN


def test_a_chain_id_contradicting_the_payload_is_refused(sale: RecordSale) -> None:
    with pytest.raises(ValueError, match="differs"):
        make_envelope(sale, chain_id=uuid4(), key="k", correlation_id=uuid4())


def test_a_message_without_chain_can_travel_with_a_null_chain() -> None:
    letter = DeadLetter(
        consumer="credit",
        original_topic="pos.commands.v1",
        partition=0,
        offset=42,
        key=None,
        reason="unparsable",
        error_type="ValidationError",
        original_value="\ufffd{",
        failed_at=datetime.fromisoformat("2025-03-01T10:00:00+00:00"),
    )
    env = make_envelope(letter, chain_id=None, key="", correlation_id=uuid4())
    assert decode(encode(env)).chain_id is None
    assert parse_payload(decode(encode(env))) == letter


def test_occurred_at_must_carry_a_time_zone(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())
    body = json.loads(encode(env))
    body["occurred_at"] = "2025-03-01T10:00:00"
    with pytest.raises(ValidationError, match="timezone"):
        decode(json.dumps(body).encode())


def test_unknown_envelope_fields_and_garbage_are_validation_errors(sale: RecordSale) -> None:
    body = json.loads(encode(make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())))
    body["extra"] = 1
    with pytest.raises(ValidationError):
        decode(json.dumps(body).encode())
    with pytest.raises(ValidationError):
        decode(b"\xff not json")


def test_the_envelope_is_immutable(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())
    with pytest.raises(ValidationError):
        env.key = "other"  # type: ignore[misc]


def test_an_unknown_type_or_version_is_a_lookup_error(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())
    for update in ({"type": "credit.NoSuchThing"}, {"schema_version": 9}):
        with pytest.raises(UnknownMessageType) as info:
            parse_payload(env.model_copy(update=update))
        assert isinstance(info.value, LookupError)


def test_a_payload_with_a_json_number_for_money_is_refused(sale: RecordSale) -> None:
    body = json.loads(encode(make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())))
    body["payload"]["total"] = 100.0
    with pytest.raises(ValidationError, match="not a JSON number"):
        parse_payload(decode(json.dumps(body).encode()))


def test_a_payload_with_an_unknown_field_is_refused(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())
    bad = env.model_copy(update={"payload": {**env.payload, "surprise": True}})
    with pytest.raises(ValidationError, match="surprise"):
        parse_payload(bad)


def test_parse_payload_as_checks_the_expected_model(sale: RecordSale) -> None:
    env = make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=uuid4())
    assert parse_payload_as(env, RecordSale).total == Decimal("100.00")
    with pytest.raises(MessageTypeMismatch):
        parse_payload_as(env, BonusesApplied)


def test_make_envelope_refuses_an_unregistered_model(sale: RecordSale) -> None:
    class Sneaky(RecordSale):
        pass

    with pytest.raises(UnknownMessageType):
        make_envelope(
            Sneaky.model_validate(sale.model_dump()),
            chain_id=CHAIN,
            key="k",
            correlation_id=uuid4(),
        )


def test_causation_and_occurred_at_are_kept(sale: RecordSale) -> None:
    cause = uuid4()
    at = datetime.fromisoformat("2025-03-01T12:00:00+02:00")
    env = make_envelope(
        sale, chain_id=CHAIN, key="k", correlation_id=uuid4(), causation_id=cause, occurred_at=at
    )
    back = decode(encode(env))
    assert back.causation_id == cause
    assert back.occurred_at == at
    assert isinstance(back, Envelope)


# ----------------------------------------------------------------------------- the wire format
# The exact bytes of two encoded envelopes, as every consumer reads them: a faster encoder must
# not change one byte (field order, compact separators, money as the value's own digits, never
# an exponent, datetimes as pydantic writes them: "Z" for UTC, the offset otherwise, the
# microseconds only when there are some, non-ASCII text as UTF-8, control characters escaped).


def _u(n: int) -> UUID:
    return UUID(f"{n:08x}-0000-4000-8000-{n:012x}")


def _wire_sale() -> SaleCompleted:
    return SaleCompleted(
        sale_id=_u(1),
        chain_id=_u(2),
        store_id=_u(3),
        terminal_id=_u(4),
        customer_id=_u(5),
        card_number="VIP-0001",
        credit_mode=CreditMode.PER_ITEM,
        sold_at=datetime(2026, 6, 1, 12, 30, 15, 120000, tzinfo=timezone(timedelta(hours=3))),
        total=Decimal("110.00"),
        paid=Decimal("60.5"),
        on_account=Decimal("49.50"),
        advance_applied=Decimal("0"),
        change=Decimal("0.00"),
        change_to_advance=Decimal("0.0000"),
        change_allocated=[Allocation(sale_id=_u(6), line_no=None, amount=Decimal("1E+1"))],
        advance_added=Decimal("0.00"),
        due_date=date(2026, 7, 1),
        bonus_accrued=Decimal("6.05"),
        bonus_spent=Decimal("0.00"),
        payments=[
            SalePaymentOutcome(
                payment_id=_u(7),
                method=PaymentMethod.CASH,
                amount=Decimal("60.50"),
                bonus_accrued=Decimal("6.05"),
            )
        ],
        lines=[
            SaleLineOutcome(
                line_no=1,
                sku="D1",
                barcode=None,
                name='Rochie "Ana" \\ Ü ✓ 🎉\n\t\x01\u2028',
                quantity=Decimal("1"),
                unit_price=Decimal("60.00"),
                discount=Decimal("0.00"),
                amount=Decimal("60.00"),
                owed=Decimal("60.00"),
            ),
            SaleLineOutcome(
                line_no=2,
                sku=None,
                barcode="5941234567890",
                name="Pantofi",
                quantity=Decimal("0.750000"),
                unit_price=Decimal("66.67"),
                discount=Decimal("0.00"),
                amount=Decimal("50.00"),
                owed=Decimal("0.00"),
            ),
        ],
        customer_balances=CustomerBalances(
            debt=Decimal("49.50"), advance=Decimal("0.00"), bonus_balance=Decimal("-1.25")
        ),
        lines_changed=[LineOwedChange(sale_id=_u(1), line_no=1, owed_after=Decimal("60.00"))],
    )


#: the envelope's payload, the same in both: only the envelope's own fields differ
_PAYLOAD = (
    '"payload":{"sale_id":"00000001-0000-4000-8000-000000000001","chain_id":"00000002-000'
    '0-4000-8000-000000000002","store_id":"00000003-0000-4000-8000-000000000003","termina'
    'l_id":"00000004-0000-4000-8000-000000000004","customer_id":"00000005-0000-4000-8000-'
    '000000000005","card_number":"VIP-0001","credit_mode":"per_item","sold_at":"2026-06-0'
    '1T12:30:15.120000+03:00","total":"110.00","paid":"60.5","on_account":"49.50","advanc'
    'e_applied":"0","change":"0.00","change_to_advance":"0.0000","change_allocated":[{"sa'
    'le_id":"00000006-0000-4000-8000-000000000006","line_no":null,"amount":"10"}],"advanc'
    'e_added":"0.00","due_date":"2026-07-01","bonus_accrued":"6.05","bonus_spent":"0.00",'
    '"payments":[{"payment_id":"00000007-0000-4000-8000-000000000007","method":"cash","am'
    'ount":"60.50","bonus_accrued":"6.05"}],"lines":[{"line_no":1,"sku":"D1","barcode":nu'
    'll,"name":"Rochie \\"Ana\\" \\\\ Ü ✓ 🎉\\n\\t\\u0001\u2028","quantity":"1","unit_pric'
    'e":"60.00","discount":"0.00","amount":"60.00","owed":"60.00"},{"line_no":2,"sku":nul'
    'l,"barcode":"5941234567890","name":"Pantofi","quantity":"0.750000","unit_price":"66.'
    '67","discount":"0.00","amount":"50.00","owed":"0.00"}],"customer_balances":{"debt":"'
    '49.50","advance":"0.00","bonus_balance":"-1.25"},"lines_changed":[{"sale_id":"000000'
    '01-0000-4000-8000-000000000001","line_no":1,"owed_after":"60.00"}]}}'
)

WIRE_0 = (
    '{"message_id":"0000000a-0000-4000-8000-00000000000a","type":"credit.SaleCompleted","schema'
    '_version":1,"occurred_at":"2026-06-01T09:30:15.123456Z","chain_id":"00000002-0000-4000-800'
    '0-000000000002","correlation_id":"00000008-0000-4000-8000-000000000008","causation_id":nul'
    'l,"key":"00000005-0000-4000-8000-000000000005",' + _PAYLOAD
)
WIRE_1 = (
    '{"message_id":"0000000a-0000-4000-8000-00000000000a","type":"credit.SaleCompleted","schema'
    '_version":1,"occurred_at":"2026-06-01T12:30:00+03:00","chain_id":"00000002-0000-4000-8000-'
    '000000000002","correlation_id":"00000008-0000-4000-8000-000000000008","causation_id":"0000'
    '0009-0000-4000-8000-000000000009","key":"00000005-0000-4000-8000-000000000005",' + _PAYLOAD
)


@pytest.mark.parametrize(
    ("occurred_at", "causation_id", "wire"),
    [
        (datetime(2026, 6, 1, 9, 30, 15, 123456, tzinfo=UTC), None, WIRE_0),
        (datetime(2026, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=3))), _u(9), WIRE_1),
    ],
)
def test_the_wire_format_is_pinned(
    occurred_at: datetime, causation_id: UUID | None, wire: str
) -> None:
    env = make_envelope(
        _wire_sale(),
        chain_id=None,
        key=_u(5),
        correlation_id=_u(8),
        causation_id=causation_id,
        occurred_at=occurred_at,
    ).model_copy(update={"message_id": _u(10)})

    raw = encode(env)

    assert raw == wire.encode("utf-8")
    assert raw == env.model_dump_json().encode("utf-8")
    assert decode(raw) == env
    assert parse_payload(decode(raw)) == _wire_sale()


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "".join(chr(c) for c in range(0x20))},
        {"text": "".join(chr(c) for c in range(0x20, 0x3000)), "more": "\U0001f389\U0010ffff"},
        {
            "numbers": [
                0,
                -1,
                2**63 - 1,
                -(2**63),
                2**64,
                0.1,
                1e16,
                -0.0,
                float("inf"),
                float("nan"),
            ]
        },
        {"nested": [{"a": [None, True, False, [], {}]}, "x"]},
        {"kind": PaymentMethod.CASH, "at": datetime(2026, 6, 1, tzinfo=UTC), "id": _u(1)},
        {"day": date(2026, 6, 1), "money": Decimal("1E+2")},
    ],
)
def test_encode_writes_any_payload_as_pydantic_does(payload: dict[str, object]) -> None:
    # the payload as decode leaves it (plain JSON values) or anything a caller put there
    env = make_envelope(_wire_sale(), chain_id=None, key="k", correlation_id=_u(8)).model_copy(
        update={"payload": payload}
    )
    assert encode(env) == env.model_dump_json().encode("utf-8")
