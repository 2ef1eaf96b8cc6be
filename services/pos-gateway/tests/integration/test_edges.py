"""The edges of the HTTP contract: rate limit, body cap, concurrent retries, key purge."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pos_gateway.entrypoints.api.auth import TokenBucket
from pos_gateway.service_layer import idempotency

pytestmark = pytest.mark.integration


async def test_a_terminal_over_its_rate_gets_429_with_retry_after(harness: Any) -> None:
    admin, terminal, _ = await harness.setup_with_customer()
    app = harness.client._transport.app
    app.state.rate_limiter = TokenBucket(rate=0.5, burst=2)
    statuses = []
    for _ in range(3):
        response = await harness.client.get("/v1/cards/CARD-1", headers=harness.auth(terminal))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    # admins are not limited by the terminals' buckets
    settings = await harness.client.get("/v1/settings", headers=harness.auth(admin))
    assert settings.status_code == 200


async def test_a_body_over_the_cap_is_refused_with_413(harness: Any) -> None:
    admin, _ = await harness.setup()
    huge = {"name": "x" * 10, "phone": "1", "email": "a@b.cd", "pad": "y" * 2_000_000}
    response = await harness.client.post("/v1/customers", json=huge, headers=harness.auth(admin))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_concurrent_retries_of_a_master_data_post_create_it_once(harness: Any) -> None:
    admin, _ = await harness.setup()
    headers = {**harness.auth(admin), "Idempotency-Key": "same"}
    body = {"name": "Dan", "phone": "+40700000009"}
    answers = await asyncio.gather(
        *[harness.client.post("/v1/customers", json=body, headers=headers) for _ in range(5)]
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["customer_id"] for a in answers}) == 1
    assert await harness.count("customers") == 1


async def test_idempotency_keys_are_purged_only_after_they_are_kept_long_enough(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    await harness.client.post(
        "/v1/customers",
        json={"name": "A", "phone": "1"},
        headers={**harness.auth(admin), "Idempotency-Key": "old"},
    )
    await harness.client.post(
        "/v1/customers",
        json={"name": "B", "phone": "2"},
        headers={**harness.auth(admin), "Idempotency-Key": "new"},
    )
    async with harness.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' "
                "WHERE key = 'old'"
            )
        )
    async with harness.gateway.session() as session, session.begin():
        purged = await idempotency.purge(session, timedelta(hours=48))
    assert purged == 1
    async with harness.engine.connect() as conn:
        keys = (await conn.execute(sa.text("SELECT key FROM idempotency_keys"))).scalars().all()
    assert keys == ["new"]


#: routes with a body model, to which FastAPI gives only a JSON body to parse
_WITH_A_BODY = [
    "/v1/customers",
    "/v1/customers/{customer}/payments",
    "/v1/customers/{customer}/advances",
]
#: routes that take no body: FastAPI reads nothing of what is sent to them
_WITHOUT_A_BODY = ["/v1/cards/CARD-1/block", "/v1/terminals/{terminal}/key"]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [(path, "text/plain") for path in _WITH_A_BODY]
    + [(path, media) for path in _WITHOUT_A_BODY for media in ("application/json", "text/plain")],
)
async def test_a_body_that_is_not_json_is_422_naming_the_body_and_records_nothing(
    harness: Any, path: str, media_type: str
) -> None:
    """A body FastAPI did not parse (sent as another media type, or to a route that takes no
    body) is refused as any other invalid body, never read as JSON for the request's
    fingerprint: a 500 here would leave a client retrying a call that can never succeed."""
    admin, terminal, customer_id = await harness.setup_with_customer()
    async with harness.engine.connect() as conn:
        terminal_id = await conn.scalar(sa.text("SELECT terminal_id FROM terminals"))
    before = await harness.snapshot()
    headers = {
        **harness.auth(terminal if path.endswith(("/payments", "/advances")) else admin),
        "Idempotency-Key": "not-json",
        "Content-Type": media_type,
    }
    url = path.format(customer=customer_id, terminal=terminal_id)
    for raw in (b"amount=10.00", b'{"kind": "take_money", "amount": "1.00"'):
        response = await harness.client.post(url, content=raw, headers=headers)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert problem["errors"][0]["field"] == "body"
    assert await harness.snapshot() == before
    # the same call without the stray body goes through: nothing was left half done
    if path.startswith("/v1/cards/"):
        ok = await harness.client.post(url, headers={**headers, "Idempotency-Key": "json"})
        assert ok.status_code == 200, ok.text


async def test_no_state_changing_route_answers_5xx_to_a_body_that_is_not_json(
    harness: Any,
) -> None:
    """Every POST, PUT, PATCH and DELETE of the public API, with each kind of key, sent a body
    that is not JSON (as JSON and as text): a 4xx problem each time, never a 5xx - a route added
    later included."""
    admin, terminal, customer_id = await harness.setup_with_customer()
    spec = harness.client._transport.app.openapi()
    keys = {
        "admin": admin,
        "terminal": terminal,
        "operator": harness.gateway.settings.operator_token,
    }
    sent = 0
    for path, operations in spec["paths"].items():
        url = re.sub(r"{card_number}", "CARD-1", path)
        url = re.sub(r"{customer_id}", customer_id, url)
        url = re.sub(r"{kind}", "sale", url)
        url = re.sub(r"{\w+}", str(uuid.uuid4()), url)
        for method in set(operations) & {"post", "put", "patch", "delete"}:
            for key, raw, media_type in itertools.product(
                keys.values(), (b"{bad", b"x"), ("application/json", "text/plain")
            ):
                headers = {
                    **harness.auth(key),
                    "Idempotency-Key": str(uuid.uuid4()),
                    "Content-Type": media_type,
                }
                response = await harness.client.request(
                    method.upper(), url, content=raw, headers=headers
                )
                sent += 1
                assert 400 <= response.status_code < 500, (method, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
    assert sent >= 20 * 12  # every state-changing route was tried
