"""A sale's terminal key may come from the process's cache of keys (`KeyCache`): the sale's
first statement checks it again, so a revoked key is refused at once all the same - on this
instance and on another one, whatever the request's body or rate - and nothing of the refused
sale is kept."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pos_gateway.entrypoints.api.auth import TokenBucket

from .conftest import Harness
from .test_keys_lifecycle import _second_instance

pytestmark = pytest.mark.integration


def _sale() -> dict[str, Any]:
    return {
        "sale_id": str(uuid.uuid4()),
        "card_number": "CARD-1",
        "lines": [{"sku": "D1", "name": "Dress", "quantity": "1", "unit_price": "60.00"}],
        "payments": [{"method": "cash", "amount": "60.00"}],
    }


def _cache(client: httpx.AsyncClient) -> Any:
    return client._transport.app.state.key_cache  # type: ignore[attr-defined]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _terminal(harness: Harness) -> tuple[str, str, str]:
    """(admin key, terminal id, terminal key) of a chain with customer CARD-1; no outcome
    comes (nobody plays credit): a sale is answered 202 after a short wait."""
    harness.gateway.settings = harness.gateway.settings.model_copy(
        update={"sale_wait_seconds": 0.05, "outcome_poll_interval_seconds": 0.05}
    )
    admin = await harness.chain()
    store = await harness.store(admin)
    made = await harness.client.post(
        f"/v1/stores/{store}/terminals", json={"name": "T"}, headers=harness.auth(admin)
    )
    await harness.customer(admin)
    return admin, made.json()["terminal_id"], made.json()["api_key"]


async def _sell(client: httpx.AsyncClient, key: str, body: Any = None) -> httpx.Response:
    return await client.post(
        "/v1/sales",
        json=_sale() if body is None else body,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": str(uuid.uuid4())},
    )


async def test_a_cached_terminal_key_revoked_is_refused_by_the_next_sale_on_every_instance(
    harness: Harness,
) -> None:
    admin, terminal_id, key = await _terminal(harness)
    other = await _second_instance(harness)
    async with other:
        for client in (harness.client, other):
            assert _cache(client).get(_hash(key)) is None
            for _ in range(2):  # the first reads the key, the second takes it from the cache
                assert (await _sell(client, key)).status_code == 202
            assert _cache(client).get(_hash(key)) is not None
        deleted = await harness.client.delete(
            f"/v1/terminals/{terminal_id}", headers=harness.auth(admin)
        )
        assert deleted.status_code == 200
        before = await harness.snapshot()
        for client in (harness.client, other):
            refused = await _sell(client, key)
            assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
            assert _cache(client).get(_hash(key)) is None  # forgotten
            again = await _sell(client, key)  # read from the database again: still refused
            assert (again.status_code, again.json()["code"]) == (401, "unauthorized")
        # the refused sales' claims, operations and commands were rolled back
        assert await harness.snapshot() == before


async def test_a_cached_key_revoked_behind_the_gateways_back_is_refused_at_once(
    harness: Harness,
) -> None:
    _admin, _terminal_id, key = await _terminal(harness)
    assert (await _sell(harness.client, key)).status_code == 202
    assert _cache(harness.client).get(_hash(key)) is not None
    async with harness.engine.begin() as conn:  # no gateway code sees this
        await conn.execute(
            sa.text("UPDATE api_keys SET revoked_at = now() WHERE key_hash = :h"),
            {"h": _hash(key)},
        )
    sales = await harness.count("operations")
    refused = await _sell(harness.client, key)
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    assert await harness.count("operations") == sales


@pytest.mark.parametrize("refused_for", ["no Idempotency-Key", "the body", "the rate"])
async def test_a_revoked_cached_key_is_refused_before_its_header_body_or_rate_are_judged(
    harness: Harness, refused_for: str
) -> None:
    admin, terminal_id, key = await _terminal(harness)
    assert (await _sell(harness.client, key)).status_code == 202
    app = harness.client._transport.app  # type: ignore[attr-defined]
    # one request more from the cache, then a third: within the rate but for the last case
    app.state.rate_limiter = TokenBucket(rate=0.001, burst=3 if refused_for != "the rate" else 1)
    assert (await _sell(harness.client, key)).status_code == 202  # from the cache
    live_answer = {"no Idempotency-Key": 422, "the body": 422, "the rate": 429}[refused_for]
    await harness.client.delete(f"/v1/terminals/{terminal_id}", headers=harness.auth(admin))
    if refused_for == "no Idempotency-Key":
        refused = await harness.client.post("/v1/sales", json=_sale(), headers=harness.auth(key))
    elif refused_for == "the body":
        refused = await _sell(harness.client, key, {"lines": "nonsense"})
    else:
        refused = await _sell(harness.client, key)
    # a live key would get `live_answer`; a revoked one gets 401, as without the cache
    assert live_answer != 401
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    assert _cache(harness.client).get(_hash(key)) is None


async def test_a_live_cached_key_still_gets_the_header_and_body_refusals(harness: Harness) -> None:
    _admin, _terminal_id, key = await _terminal(harness)
    assert (await _sell(harness.client, key)).status_code == 202
    no_header = await harness.client.post("/v1/sales", json=_sale(), headers=harness.auth(key))
    assert (no_header.status_code, no_header.json()["code"]) == (422, "validation_error")
    bad_body = await _sell(harness.client, key, {"lines": "nonsense"})
    assert (bad_body.status_code, bad_body.json()["code"]) == (422, "validation_error")
    assert _cache(harness.client).get(_hash(key)) is not None


async def test_only_terminal_keys_are_cached_and_other_keys_are_refused_as_before(
    harness: Harness,
) -> None:
    admin, _terminal_id, key = await _terminal(harness)
    for _ in range(2):
        wrong_kind = await _sell(harness.client, admin)
        assert (wrong_kind.status_code, wrong_kind.json()["code"]) == (403, "forbidden")
    assert _cache(harness.client).get(_hash(admin)) is None
    unknown = await _sell(harness.client, "no-such-key")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "unauthorized")
    # routes other than the sale never take a key from the cache
    assert (await _sell(harness.client, key)).status_code == 202
    async with harness.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE api_keys SET revoked_at = now()"))
    card = await harness.client.get("/v1/cards/CARD-1", headers=harness.auth(key))
    assert card.status_code == 401
