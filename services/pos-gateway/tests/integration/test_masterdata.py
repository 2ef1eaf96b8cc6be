"""Keys, chains, settings, customers and cards against a real PostgreSQL database."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from pos_gateway.entrypoints.api import examples

pytestmark = pytest.mark.integration

#: a new chain's settings: those of the documented example (`reminder_email`, the notifier's
#: reminder digest, is beyond api.md's list: extra fields are allowed)
DEFAULT_SETTINGS = examples.SETTINGS


async def test_each_key_kind_reaches_only_its_own_endpoints(harness: Any) -> None:
    admin, terminal = await harness.setup()
    client = harness.client
    assert (await client.get("/v1/settings")).status_code == 401
    assert (await client.get("/v1/settings", headers=harness.auth("nope"))).json()["code"] == (
        "unauthorized"
    )
    refused = await client.get("/v1/settings", headers=harness.auth(terminal))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert refused.headers["content-type"] == "application/problem+json"
    chain = await client.post("/v1/chains", json={"name": "X"}, headers=harness.auth(admin))
    assert chain.status_code == 403
    sale = await client.post(
        "/v1/sales",
        headers=harness.till(admin),
        json={
            "lines": [{"name": "A", "quantity": "1", "unit_price": "1.00"}],
            "payments": [{"method": "cash", "amount": "1.00"}],
        },
    )
    assert sale.status_code == 403
    assert (await client.get("/v1/settings", headers=harness.auth(admin))).status_code == 200


async def test_settings_start_at_the_documented_defaults_and_change_partially(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    headers = harness.auth(admin)
    assert (await harness.client.get("/v1/settings", headers=headers)).json() == DEFAULT_SETTINGS
    before = await harness.outbox()
    changed = await harness.client.put(
        "/v1/settings",
        json={"credit_mode": "per_sale", "bonus_expiry_days": 365},
        headers=headers,
    )
    assert changed.status_code == 200
    assert changed.json() == {
        **DEFAULT_SETTINGS,
        "credit_mode": "per_sale",
        "bonus_expiry_days": 365,
    }
    events = (await harness.outbox())[len(before) :]
    assert [env.type for _, env in events] == ["masterdata.ChainSettingsChanged"]
    assert events[0][1].payload["settings"]["credit_mode"] == "per_sale"
    bad = await harness.client.put("/v1/settings", json={"credit_mode": "weekly"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "credit_mode"
    precise = await harness.client.put(
        "/v1/settings", json={"bonus_rate_percent": "10.125"}, headers=headers
    )
    assert precise.status_code == 422
    assert precise.json()["errors"][0]["field"] == "bonus_rate_percent"
    cleared = await harness.client.put(
        "/v1/settings", json={"bonus_expiry_days": None}, headers=headers
    )
    assert cleared.json()["bonus_expiry_days"] is None
    assert cleared.json()["credit_mode"] == "per_sale"


async def test_the_reminder_email_is_a_setting_checked_published_and_cleared_with_null(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    headers = harness.auth(admin)
    for bad in ("not-an-email", "two@@x.ro", "a b@x.ro", 42, "x" * 250 + "@x.ro"):
        refused = await harness.client.put(
            "/v1/settings", json={"reminder_email": bad}, headers=headers
        )
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == "reminder_email"
    before = await harness.outbox()
    set_ = await harness.client.put(
        "/v1/settings", json={"reminder_email": " service@kids.example.ro "}, headers=headers
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["reminder_email"] == "service@kids.example.ro"
    assert set_.json()["credit_mode"] == "balance"  # the others keep their values
    [(_, event)] = (await harness.outbox())[len(before) :]
    assert event.type == "masterdata.ChainSettingsChanged"
    assert event.payload["settings"]["reminder_email"] == "service@kids.example.ro"
    read = await harness.client.get("/v1/settings", headers=headers)
    assert read.json()["reminder_email"] == "service@kids.example.ro"
    cleared = await harness.client.put(
        "/v1/settings", json={"reminder_email": None}, headers=headers
    )
    assert cleared.json()["reminder_email"] is None
    [_, (_, event)] = (await harness.outbox())[len(before) :]
    assert event.payload["settings"]["reminder_email"] is None


async def test_a_customer_read_merges_master_data_with_reporting_balances(harness: Any) -> None:
    admin, _ = await harness.setup()
    created = await harness.customer(admin)
    assert created["debt"] == "0.00"
    assert created["credit_available"] == "500.00"
    cid = created["customer_id"]
    harness.internal.balances[cid] = {
        "debt": "120.5",
        "advance": "0",
        "bonus_balance": "3",
        "overdue": True,
    }
    got = (await harness.client.get(f"/v1/customers/{cid}", headers=harness.auth(admin))).json()
    assert got == {
        "customer_id": cid,
        "name": "Ana Pop",
        "phone": "+40700000001",
        "email": None,
        "vip": True,
        "card_number": "CARD-1",
        "bonus_accrual": True,
        "credit_limit": "500.00",
        "max_payment_delay_days": None,
        "debt": "120.50",
        "advance": "0.00",
        "bonus_balance": "3.00",
        "credit_available": "379.50",
        "overdue": True,
    }


async def test_a_card_lookup_and_a_customer_read_hold_no_connection_while_reporting_answers(
    harness: Any,
) -> None:
    """Reporting may be slow under load: the read session (and its pooled connection) is given
    back before it is asked, so slow answers do not pile connections up in the pool."""
    admin, terminal, cid = await harness.setup_with_customer()
    harness.internal.open_sales[cid] = []
    harness.internal.pool = harness.engine.sync_engine.pool
    card = await harness.client.get("/v1/cards/CARD-1", headers=harness.auth(terminal))
    read = await harness.client.get(f"/v1/customers/{cid}", headers=harness.auth(admin))
    assert (card.status_code, read.status_code) == (200, 200), (card.text, read.text)
    # the card lookup asks for balances (and open sales in a mode that has them), the read for
    # balances: at every call no connection of the gateway's pool is checked out
    assert len(harness.internal.checked_out) >= 2, harness.internal.calls
    assert set(harness.internal.checked_out) == {0}, harness.internal.checked_out


async def test_without_reporting_a_customer_read_is_503_never_zeros(harness: Any) -> None:
    admin, _ = await harness.setup()
    cid = (await harness.customer(admin))["customer_id"]
    harness.internal.down = True
    response = await harness.client.get(f"/v1/customers/{cid}", headers=harness.auth(admin))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unavailable"


async def test_customers_are_listed_by_filter_and_paged_with_an_opaque_cursor(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    for i in range(5):
        await harness.customer(
            admin,
            name=f"Customer {i}",
            phone=f"+4070000010{i}",
            card_number=f"C-{i}",
            vip=i % 2 == 0,
        )
    headers = harness.auth(admin)
    first = (await harness.client.get("/v1/customers?limit=2", headers=headers)).json()
    assert [c["name"] for c in first["items"]] == ["Customer 0", "Customer 1"]
    second = (
        await harness.client.get(f"/v1/customers?limit=2&cursor={first['next']}", headers=headers)
    ).json()
    third = (
        await harness.client.get(f"/v1/customers?limit=2&cursor={second['next']}", headers=headers)
    ).json()
    assert [c["name"] for c in second["items"] + third["items"]] == [
        "Customer 2",
        "Customer 3",
        "Customer 4",
    ]
    assert third["next"] is None
    vips = (await harness.client.get("/v1/customers?vip=true", headers=headers)).json()
    assert [c["name"] for c in vips["items"]] == ["Customer 0", "Customer 2", "Customer 4"]
    by_card = (await harness.client.get("/v1/customers?q=c-3", headers=headers)).json()
    assert [c["card_number"] for c in by_card["items"]] == ["C-3"]
    by_phone = (await harness.client.get("/v1/customers?q=0104", headers=headers)).json()
    assert [c["name"] for c in by_phone["items"]] == ["Customer 4"]
    too_many = await harness.client.get("/v1/customers?limit=501", headers=headers)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"


async def test_another_chains_customer_looks_exactly_like_a_missing_one(harness: Any) -> None:
    admin, _ = await harness.setup()
    other_admin = await harness.chain(name="Other")
    theirs = (await harness.customer(other_admin))["customer_id"]
    before = await harness.snapshot()
    headers = harness.auth(admin)
    foreign = await harness.client.get(f"/v1/customers/{theirs}", headers=headers)
    missing = await harness.client.get(f"/v1/customers/{uuid.uuid4()}", headers=headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    patched = await harness.client.patch(
        f"/v1/customers/{theirs}", json={"name": "Hacked"}, headers=headers
    )
    assert patched.status_code == 404
    card = await harness.client.post(
        f"/v1/customers/{theirs}/cards", json={"card_number": "NEW-1"}, headers=headers
    )
    assert card.status_code == 404
    blocked = await harness.client.post("/v1/cards/CARD-1/block", headers=headers)
    assert blocked.status_code == 404
    assert await harness.snapshot() == before


async def test_patching_a_customer_publishes_the_full_record(harness: Any) -> None:
    admin, _ = await harness.setup()
    cid = (await harness.customer(admin))["customer_id"]
    before = len(await harness.outbox())
    response = await harness.client.patch(
        f"/v1/customers/{cid}",
        json={"credit_limit": None, "email": "ana@example.org"},
        headers=harness.auth(admin),
    )
    assert response.status_code == 200
    assert response.json()["credit_limit"] is None
    assert response.json()["credit_available"] is None
    events = (await harness.outbox())[before:]
    assert [env.type for _, env in events] == ["masterdata.CustomerUpdated"]
    assert events[0][1].key == cid
    assert events[0][1].payload["customer"]["email"] == "ana@example.org"
    card = await harness.client.patch(
        f"/v1/customers/{cid}", json={"card_number": "X"}, headers=harness.auth(admin)
    )
    assert card.status_code == 422
    assert card.json()["errors"] == [{"field": "card_number", "message": "unknown field"}]


async def test_a_new_card_blocks_the_previous_one(harness: Any) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    before = len(await harness.outbox())
    issued = await harness.client.post(
        f"/v1/customers/{cid}/cards", json={"card_number": "CARD-2"}, headers=harness.auth(admin)
    )
    assert issued.status_code == 201
    assert issued.json() == {"customer_id": cid, "card_number": "CARD-2"}
    events = (await harness.outbox())[before:]
    assert [env.type for _, env in events] == [
        "masterdata.CardIssued",
        "masterdata.CustomerUpdated",
    ]
    assert events[0][1].payload["previous_card_number"] == "CARD-1"
    old = await harness.client.get("/v1/cards/CARD-1", headers=harness.auth(terminal))
    assert old.status_code == 403
    assert old.json()["code"] == "card_blocked"
    new = await harness.client.get("/v1/cards/CARD-2", headers=harness.auth(terminal))
    assert new.status_code == 200
    assert new.json()["customer_id"] == cid
    assert new.json()["open_sales"] == []
    unknown = await harness.client.get("/v1/cards/NOPE", headers=harness.auth(terminal))
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "card_not_found"


async def test_blocking_a_card_is_answered_the_same_every_time(harness: Any) -> None:
    admin, terminal, _ = await harness.setup_with_customer()
    first = await harness.client.post("/v1/cards/CARD-1/block", headers=harness.auth(admin))
    again = await harness.client.post("/v1/cards/CARD-1/block", headers=harness.auth(admin))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"card_number": "CARD-1", "blocked": True}
    types = [env.type for _, env in await harness.outbox()]
    assert types.count("masterdata.CardBlocked") == 1
    by_terminal = await harness.client.post(
        "/v1/cards/CARD-1/block", headers=harness.auth(terminal)
    )
    assert by_terminal.status_code == 403


async def test_card_lookup_lists_open_sales_outside_balance_mode(harness: Any) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    await harness.client.put(
        "/v1/settings", json={"credit_mode": "per_sale"}, headers=harness.auth(admin)
    )
    sale = {
        "sale_id": str(uuid.uuid4()),
        "sold_at": "2026-01-01T10:00:00+02:00",
        "due_date": "2026-01-31",
        "amount_owed": "30.00",
        "overdue": False,
    }
    harness.internal.open_sales[cid] = [sale]
    got = await harness.client.get("/v1/cards/CARD-1", headers=harness.auth(terminal))
    assert got.json()["open_sales"] == [sale]
    modes = [r.url.params.get("mode") for r in harness.internal.calls if "open-sales" in r.url.path]
    assert modes == ["per_sale"]


async def test_the_same_idempotency_key_and_body_change_nothing_the_second_time(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    body = {"name": "Dan", "phone": "+40700000009"}
    headers = {**harness.auth(admin), "Idempotency-Key": "cust-1"}
    first = await harness.client.post("/v1/customers", json=body, headers=headers)
    before = await harness.snapshot()
    again = await harness.client.post("/v1/customers", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert await harness.snapshot() == before
    other = await harness.client.post(
        "/v1/customers", json={**body, "name": "Dana"}, headers=headers
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert await harness.snapshot() == before


async def test_idempotency_keys_are_scoped_to_the_calling_key(harness: Any) -> None:
    admin, _ = await harness.setup()
    other_admin = await harness.chain(name="Other")
    body = {"name": "Dan", "phone": "+40700000009"}
    mine = await harness.client.post(
        "/v1/customers", json=body, headers={**harness.auth(admin), "Idempotency-Key": "k"}
    )
    theirs = await harness.client.post(
        "/v1/customers", json=body, headers={**harness.auth(other_admin), "Idempotency-Key": "k"}
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["customer_id"] != theirs.json()["customer_id"]


async def test_every_master_data_change_is_published_in_its_transaction(harness: Any) -> None:
    admin, _ = await harness.setup()
    await harness.customer(admin)
    events = await harness.outbox()
    assert {topic for topic, _ in events} == {"masterdata.events.v1"}
    assert [env.type for _, env in events] == [
        "masterdata.ChainRegistered",
        "masterdata.StoreRegistered",
        "masterdata.TerminalRegistered",
        "masterdata.CustomerRegistered",
        "masterdata.CardIssued",
    ]


async def test_a_card_number_is_issued_once_per_chain(harness: Any) -> None:
    admin, _ = await harness.setup()
    await harness.customer(admin)
    before = await harness.snapshot()
    response = await harness.client.post(
        "/v1/customers",
        json={"name": "B", "phone": "1", "card_number": "CARD-1"},
        headers=harness.auth(admin),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "card_number"
    assert await harness.snapshot() == before


async def test_the_openapi_document_needs_no_key_and_lists_every_endpoint(harness: Any) -> None:
    response = await harness.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/v1/chains",
        "/v1/stores",
        "/v1/stores/{store_id}/terminals",
        "/v1/settings",
        "/v1/customers",
        "/v1/customers/{customer_id}",
        "/v1/customers/{customer_id}/cards",
        "/v1/cards/{card_number}/block",
        "/v1/cards/{card_number}",
        "/v1/sales",
        "/v1/sales/{sale_id}",
        "/v1/customers/{customer_id}/payments",
        "/v1/customers/{customer_id}/advances",
        "/v1/customers/{customer_id}/refunds",
        "/v1/sales/{sale_id}/returns",
        "/v1/payments/{payment_id}/bonus-type",
        "/v1/sales/{sale_id}/revoke-discount",
        "/v1/reports/payment-balance",
        "/v1/reports/unpaid-goods",
        "/v1/reports/aging",
        "/v1/reports/bonus-statistics",
        "/v1/customers/{customer_id}/statement",
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/complete",
    ]:
        assert path in paths, path
    sale = paths["/v1/sales"]["post"]["responses"]
    assert {"201", "202", "401", "403", "409", "422"} <= set(sale)
    # reading one task (the email digest's link) names the roles that may
    one_task = paths["/v1/tasks/{task_id}"]["get"]
    assert "customer service" in one_task["description"]
    assert {"200", "401", "403", "404", "503"} <= set(one_task["responses"])


async def test_reports_pass_the_query_and_accept_through_to_reporting(harness: Any) -> None:
    admin, terminal = await harness.setup()
    headers = harness.auth(admin)
    csv = await harness.client.get(
        "/v1/reports/aging?store_id=" + str(uuid.uuid4()), headers={**headers, "Accept": "text/csv"}
    )
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    json_report = await harness.client.get(
        "/v1/reports/payment-balance?from=2026-01-01&to=2026-01-31&sort=closing",
        headers=headers,
    )
    assert json_report.json()["query"] == "from=2026-01-01&to=2026-01-31&sort=closing"
    assert (
        await harness.client.get("/v1/reports/aging", headers=harness.auth(terminal))
    ).status_code == 403
    bad = await harness.client.get("/v1/reports/aging?from=yesterday", headers=headers)
    assert bad.status_code == 422


async def test_a_statement_is_proxied_only_for_a_customer_of_the_chain(harness: Any) -> None:
    admin, _ = await harness.setup()
    cid = (await harness.customer(admin))["customer_id"]
    other_admin = await harness.chain(name="Other")
    url = f"/v1/customers/{cid}/statement?from=2026-01-01&to=2026-01-31"
    mine = await harness.client.get(url, headers={**harness.auth(admin), "Accept": "text/csv"})
    assert mine.status_code == 200
    assert mine.text == "a,b\n1,2\n"
    theirs = await harness.client.get(url, headers=harness.auth(other_admin))
    assert theirs.status_code == 404
    paths = [r.url.path for r in harness.internal.calls if r.url.path.endswith("/statement")]
    assert len(paths) == 1


async def test_a_nul_character_in_a_card_path_or_a_cursor_is_answered_never_a_500(
    harness: Any,
) -> None:
    admin, terminal = await harness.setup()
    lookup = await harness.client.get("/v1/cards/a%00b", headers=harness.auth(terminal))
    assert (lookup.status_code, lookup.json()["code"]) == (404, "card_not_found")
    block = await harness.client.post("/v1/cards/a%00b/block", headers=harness.auth(admin))
    assert (block.status_code, block.json()["code"]) == (404, "card_not_found")
    forged = base64.urlsafe_b64encode(json.dumps(["a\x00", str(uuid.uuid4())]).encode())
    for path in ("/v1/customers", "/v1/stores"):
        page = await harness.client.get(
            path, params={"cursor": forged.decode()}, headers=harness.auth(admin)
        )
        assert page.status_code == 422, (path, page.text)
        assert page.json()["errors"][0]["field"] == "cursor"


async def test_malformed_json_with_an_unknown_key_is_401_and_with_the_chain_key_422(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    broken, json_type = b'{"name": "Ana", ', {"content-type": "application/json"}
    wrong = await harness.client.post(
        "/v1/customers", content=broken, headers={**json_type, **harness.auth("not-a-key")}
    )
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
    right = await harness.client.post(
        "/v1/customers", content=broken, headers={**json_type, **harness.auth(admin)}
    )
    assert (right.status_code, right.json()["errors"][0]["field"]) == (422, "body")
