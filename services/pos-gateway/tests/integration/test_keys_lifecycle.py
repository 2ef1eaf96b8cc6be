"""Keys have a lifecycle (issue 13 finding 10): chains are listed, a lost admin key is replaced,
stores are listed with their terminals, a terminal's key is replaced or the terminal revoked -
and a replaced or revoked key is refused at once, also by another gateway instance on the same
database (only a sale may take its key from a cache, and checks it again: test_key_cache.py)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pos_gateway.bootstrap import Gateway
from pos_gateway.entrypoints.app import build_public_app

from .conftest import OPERATOR, Harness

pytestmark = pytest.mark.integration


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _second_instance(harness: Harness) -> httpx.AsyncClient:
    """Another gateway process's app on the same database (its own Gateway, sessions, app)."""
    from servicekit.db import make_session_factory

    other = Gateway(harness.gateway.settings)
    other.start(
        make_session_factory(harness.engine),
        reporting_transport=httpx.MockTransport(harness.internal.handler),
        notifier_transport=httpx.MockTransport(harness.internal.handler),
        credit_transport=httpx.MockTransport(harness.internal.handler),
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_public_app(other)),
        base_url="http://other-gateway.test",
    )


async def _replaced_on_both_instances(
    harness: Harness,
    other: httpx.AsyncClient,
    *,
    probe: str,
    old_key: str,
    replace: str,
    by: str,
    secret_field: str,
) -> dict[str, Any]:
    """`old_key` reads `probe` on the other instance (which caches it); `POST replace` with the
    key `by` answers 201 with a new key in `secret_field`; from then on both instances refuse
    the old key (401 `unauthorized`) and take the new one. The answer's body."""
    assert (await other.get(probe, headers=_auth(old_key))).status_code == 200
    replaced = await harness.client.post(replace, headers=_auth(by))
    assert replaced.status_code == 201
    new_key = replaced.json()[secret_field]
    for client in (harness.client, other):
        old = await client.get(probe, headers=_auth(old_key))
        assert old.status_code == 401 and old.json()["code"] == "unauthorized"
        assert (await client.get(probe, headers=_auth(new_key))).status_code == 200
    body: dict[str, Any] = replaced.json()
    return body


async def test_the_operator_lists_every_chain_page_by_page(harness: Harness) -> None:
    for _ in range(3):
        await harness.chain()
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await harness.client.get("/v1/chains", params=params, headers=_auth(OPERATOR))
        ).json()
        seen += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 3 and len({c["chain_id"] for c in seen}) == 3
    assert set(seen[0]) == {"chain_id", "name", "currency", "timezone", "created_at"}
    assert seen[0]["currency"] == "EUR" and seen[0]["timezone"] == "Europe/Bucharest"
    bad = await harness.client.get(
        "/v1/chains", params={"cursor": "nonsense"}, headers=_auth(OPERATOR)
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    admin = await harness.chain()
    assert (await harness.client.get("/v1/chains", headers=_auth(admin))).status_code == 403


async def test_a_replaced_admin_key_is_refused_at_once_on_every_instance(
    harness: Harness,
) -> None:
    admin = await harness.chain()
    chain_id = (await harness.client.get("/v1/chains", headers=_auth(OPERATOR))).json()["items"][0][
        "chain_id"
    ]
    other = await _second_instance(harness)
    async with other:
        replaced = await _replaced_on_both_instances(
            harness,
            other,
            probe="/v1/settings",
            old_key=admin,
            replace=f"/v1/chains/{chain_id}/admin-key",
            by=OPERATOR,
            secret_field="admin_api_key",
        )
        new_admin = replaced["admin_api_key"]
    missing = await harness.client.post(
        f"/v1/chains/{uuid.uuid4()}/admin-key", headers=_auth(OPERATOR)
    )
    assert missing.status_code == 404
    by_admin = await harness.client.post(
        f"/v1/chains/{chain_id}/admin-key", headers=_auth(new_admin)
    )
    assert by_admin.status_code == 403


async def test_a_key_issued_under_an_idempotency_key_is_shown_again_but_stored_only_hashed(
    harness: Harness,
) -> None:
    await harness.chain()
    chain_id = (await harness.client.get("/v1/chains", headers=_auth(OPERATOR))).json()["items"][0][
        "chain_id"
    ]
    headers = {**_auth(OPERATOR), "Idempotency-Key": "replace-1"}
    first = await harness.client.post(f"/v1/chains/{chain_id}/admin-key", headers=headers)
    again = await harness.client.post(f"/v1/chains/{chain_id}/admin-key", headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    key = first.json()["admin_api_key"]
    assert (await harness.client.get("/v1/settings", headers=_auth(key))).status_code == 200
    chain = await harness.client.post(
        "/v1/chains",
        json={"name": "Idem", "currency": "EUR", "timezone": "UTC"},
        headers={**_auth(OPERATOR), "Idempotency-Key": "chain-1"},
    )
    admin = chain.json()["admin_api_key"]
    store = await harness.store(admin)
    terminal = await harness.client.post(
        f"/v1/stores/{store}/terminals",
        json={"name": "T"},
        headers={**_auth(admin), "Idempotency-Key": "terminal-1"},
    )
    rows: list[str] = []
    async with harness.engine.connect() as conn:
        for table in ("idempotency_keys", "api_keys", "chains", "terminals"):
            rows += [
                str(row) for row in (await conn.execute(sa.text(f"SELECT * FROM {table}"))).all()
            ]
    everything = " ".join(rows)
    for secret in (key, admin, terminal.json()["api_key"]):
        assert secret not in everything
        assert hashlib.sha256(secret.encode()).hexdigest() in everything


async def test_stores_are_listed_with_their_terminals_and_when_each_was_revoked(
    harness: Harness,
) -> None:
    admin = await harness.chain()
    first_store = await harness.store(admin, "A1")
    second_store = await harness.store(admin, "B2")
    kept = await harness.client.post(
        f"/v1/stores/{first_store}/terminals", json={"name": "Till 1"}, headers=_auth(admin)
    )
    gone = await harness.client.post(
        f"/v1/stores/{first_store}/terminals", json={"name": "Till 2"}, headers=_auth(admin)
    )
    deleted = await harness.client.delete(
        f"/v1/terminals/{gone.json()['terminal_id']}", headers=_auth(admin)
    )
    assert deleted.status_code == 200
    assert deleted.json()["terminal_id"] == gone.json()["terminal_id"]
    listed = (
        await harness.client.get("/v1/stores", params={"limit": 1}, headers=_auth(admin))
    ).json()
    [store] = listed["items"]
    assert (store["store_id"], store["code"]) == (first_store, "A1")
    by_id = {t["terminal_id"]: t for t in store["terminals"]}
    assert by_id[kept.json()["terminal_id"]]["revoked_at"] is None
    assert by_id[gone.json()["terminal_id"]]["revoked_at"] == deleted.json()["revoked_at"]
    assert {t["name"] for t in store["terminals"]} == {"Till 1", "Till 2"}
    assert all(t["created_at"] for t in store["terminals"])
    rest = (
        await harness.client.get(
            "/v1/stores", params={"cursor": listed["next"]}, headers=_auth(admin)
        )
    ).json()
    assert [s["store_id"] for s in rest["items"]] == [second_store] and rest["next"] is None
    other_chain = await harness.chain()
    assert (await harness.client.get("/v1/stores", headers=_auth(other_chain))).json() == {
        "items": [],
        "next": None,
    }


async def test_a_replaced_terminal_key_and_a_deleted_terminal_are_refused_at_once(
    harness: Harness,
) -> None:
    admin = await harness.chain()
    store = await harness.store(admin)
    made = await harness.client.post(
        f"/v1/stores/{store}/terminals", json={"name": "T"}, headers=_auth(admin)
    )
    terminal_id, old_key = made.json()["terminal_id"], made.json()["api_key"]
    await harness.customer(admin)
    other = await _second_instance(harness)
    async with other:
        replaced = await _replaced_on_both_instances(
            harness,
            other,
            probe="/v1/cards/CARD-1",
            old_key=old_key,
            replace=f"/v1/terminals/{terminal_id}/key",
            by=admin,
            secret_field="api_key",
        )
        assert replaced["terminal_id"] == terminal_id
        new_key = replaced["api_key"]
        deleted = await harness.client.delete(f"/v1/terminals/{terminal_id}", headers=_auth(admin))
        for client in (harness.client, other):
            assert (await client.get("/v1/cards/CARD-1", headers=_auth(new_key))).status_code == (
                401
            )
    again = await harness.client.delete(f"/v1/terminals/{terminal_id}", headers=_auth(admin))
    assert again.json() == deleted.json()  # asked again, the same answer
    no_key = await harness.client.post(f"/v1/terminals/{terminal_id}/key", headers=_auth(admin))
    assert no_key.status_code == 404  # a deleted terminal takes no key any more


async def test_another_chains_terminal_is_exactly_as_absent_as_none(harness: Harness) -> None:
    admin, _ = await harness.setup()
    store = await harness.store(admin, "S9")
    terminal_id = (
        await harness.client.post(
            f"/v1/stores/{store}/terminals", json={"name": "T"}, headers=_auth(admin)
        )
    ).json()["terminal_id"]
    intruder = await harness.chain()
    for method, path in (
        ("POST", f"/v1/terminals/{terminal_id}/key"),
        ("DELETE", f"/v1/terminals/{terminal_id}"),
        ("POST", f"/v1/terminals/{uuid.uuid4()}/key"),
        ("DELETE", f"/v1/terminals/{uuid.uuid4()}"),
    ):
        got = await harness.client.request(method, path, headers=_auth(intruder))
        assert (got.status_code, got.json()["code"]) == (404, "not_found"), path
    listed = (await harness.client.get("/v1/stores", headers=_auth(admin))).json()["items"]
    assert all(t["revoked_at"] is None for s in listed for t in s["terminals"])
