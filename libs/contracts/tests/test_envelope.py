"""The envelope goes to bytes and back unchanged; payloads are checked against the registry."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.deadletter.v1 import DeadLetter
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
