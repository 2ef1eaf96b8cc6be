"""Request models and their problem+json rendering: no floats, no unknown fields."""

from __future__ import annotations

import json

import httpx
import pytest

from pos_gateway import schemas as s
from pos_gateway.domain.errors import PROBLEMS
from pos_gateway.entrypoints.api.problems import field_path

SALE = {
    "lines": [{"name": "Dress", "quantity": "1", "unit_price": "60.00"}],
    "payments": [{"method": "cash", "amount": "60.00"}],
}


def _errors(response: object) -> list[dict[str, str]]:
    body = response.json()  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    assert body["code"] == "validation_error"
    assert body["status"] == 422
    assert {"type", "title", "detail"} <= set(body)
    errors: list[dict[str, str]] = body["errors"]
    return errors


async def test_a_valid_sale_passes(client: httpx.AsyncClient) -> None:
    assert (await client.post("/sales", json=SALE)).status_code == 200


async def test_a_json_number_for_money_is_refused_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    body = json.loads(json.dumps(SALE))
    body["lines"][0]["unit_price"] = 60.0
    response = await client.post("/sales", json=body)
    assert response.status_code == 422
    errors = _errors(response)
    assert errors[0]["field"] == "lines.0.unit_price"
    assert "decimal string" in errors[0]["message"]


async def test_an_integer_quantity_is_refused_too(client: httpx.AsyncClient) -> None:
    body = json.loads(json.dumps(SALE))
    body["lines"][0]["quantity"] = 1
    assert _errors(await client.post("/sales", json=body))[0]["field"] == "lines.0.quantity"


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    errors = _errors(await client.post("/sales", json={**SALE, "tip": "1.00"}))
    assert errors == [{"field": "tip", "message": "unknown field"}]


async def test_missing_fields_are_named(client: httpx.AsyncClient) -> None:
    errors = _errors(await client.post("/sales", json={"payments": []}))
    assert errors == [{"field": "lines", "message": "field required"}]


async def test_bad_values_are_named(client: httpx.AsyncClient) -> None:
    body = json.loads(json.dumps(SALE))
    body["payments"][0]["method"] = "cheque"
    assert _errors(await client.post("/sales", json=body))[0]["field"] == "payments.0.method"


async def test_broken_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/sales", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert _errors(response)[0]["field"] == "body"


async def test_settings_may_name_some_fields_and_are_strictly_typed(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.put("/settings", json={"credit_mode": "per_item", "bonus_expiry_days": None})
    assert ok.json() == {"credit_mode": "per_item", "bonus_expiry_days": None}
    assert _errors(await client.put("/settings", json={"max_payment_delay_days": "30"}))
    assert _errors(await client.put("/settings", json={"block_credit_when_overdue": "yes"}))
    assert _errors(await client.put("/settings", json={"bonus_rate_percent": 10}))
    assert _errors(await client.put("/settings", json={"bonus_rate_percent": "100.01"}))
    assert _errors(await client.put("/settings", json={"credit_mode": None}))[0]["message"] == (
        "credit_mode may not be null"
    )


async def test_a_refusal_is_problem_json_with_its_code_and_status(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/refused")
    assert response.status_code == PROBLEMS["card_blocked"][0] == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "card_blocked"
    assert body["type"] == "/problems/card_blocked"
    assert body["detail"] == "this card is blocked"


async def test_unknown_paths_are_problem_json_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_field_paths_read_like_the_json() -> None:
    assert field_path(("body", "lines", 0, "unit_price")) == "lines.0.unit_price"
    assert field_path(("header", "idempotency-key")) == "Idempotency-Key"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body",)) == "body"


def test_a_nul_character_in_any_text_is_a_validation_error_not_a_database_error() -> None:
    import pydantic

    for model, body in (
        (s.ChainCreate, {"name": "p\x00", "currency": "EUR", "timezone": "Europe/Bucharest"}),
        (s.CustomerCreate, {"name": "Ana", "phone": "1\x00"}),
        (
            s.SaleCreate,
            {
                "lines": [{"name": "Dr\x00ess", "quantity": "1", "unit_price": "1.00"}],
                "payments": [{"method": "cash", "amount": "1.00"}],
            },
        ),
    ):
        with pytest.raises(pydantic.ValidationError, match="NUL"):
            model.model_validate(body)
