"""Security of the public API against the running stack: tenant isolation generated from
/openapi.json, limits (body size, rate, page size), secrets at rest and in logs, payment card
numbers refused, and bad input never recording anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis  # a dependency of the tests: missing, this module fails (never skips)

from devstack.ports import free_port
from devstack.stack import Stack
from servicekit.settings import with_database

pytestmark = pytest.mark.e2e

OPERATOR, ADMIN, TERMINAL, READER = "operator", "admin", "terminal", "reader"
#: a staff user's token (POST /v1/sessions), and no key at all (signing in)
STAFF, PUBLIC = "staff", "public"
SALE = {
    "lines": [{"name": "Dress", "quantity": "1", "unit_price": "10.00"}],
    "payments": [{"method": "cash", "amount": "10.00"}],
}

#: Which key each endpoint takes, and a valid body for it. Every operation of /openapi.json
#: must be listed here (test_every_endpoint_is_in_the_matrix): a new endpoint cannot be left
#: out of the isolation matrix. `{customer_id}`-style names are filled with chain A's objects.
MATRIX: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("POST", "/v1/chains"): (
        OPERATOR,
        {"name": "X", "currency": "EUR", "timezone": "Europe/Bucharest"},
    ),
    ("GET", "/v1/chains"): (OPERATOR, None),
    ("POST", "/v1/chains/{chain_id}/admin-key"): (OPERATOR, None),
    ("POST", "/v1/stores"): (ADMIN, {"code": "SX", "name": "Store X"}),
    ("GET", "/v1/stores"): (ADMIN, None),
    ("POST", "/v1/terminals/{terminal_id}/key"): (ADMIN, None),
    ("DELETE", "/v1/terminals/{terminal_id}"): (ADMIN, None),
    ("POST", "/v1/stores/{store_id}/terminals"): (ADMIN, {"name": "Till X"}),
    ("GET", "/v1/settings"): (ADMIN, None),
    ("PUT", "/v1/settings"): (ADMIN, {"reminder_repeat_days": 7}),
    ("POST", "/v1/customers"): (ADMIN, {"name": "Y", "phone": "+40700000001"}),
    ("GET", "/v1/customers"): (ADMIN, None),
    ("GET", "/v1/customers/{customer_id}"): (ADMIN, None),
    ("PATCH", "/v1/customers/{customer_id}"): (ADMIN, {"name": "Renamed"}),
    ("POST", "/v1/customers/{customer_id}/cards"): (ADMIN, {"card_number": "NEWCARD-1"}),
    ("POST", "/v1/cards/{card_number}/block"): (ADMIN, None),
    ("GET", "/v1/cards/{card_number}"): (READER, None),
    ("POST", "/v1/sales"): (TERMINAL, {**SALE, "card_number": "{card_number}"}),
    ("GET", "/v1/sales/{sale_id}"): (READER, None),
    ("POST", "/v1/customers/{customer_id}/payments"): (
        TERMINAL,
        {"kind": "take_money", "amount": "1.00", "method": "cash", "card_number": "{card_number}"},
    ),
    ("POST", "/v1/customers/{customer_id}/advances"): (
        TERMINAL,
        {"amount": "1.00", "method": "cash", "card_number": "{card_number}"},
    ),
    ("POST", "/v1/customers/{customer_id}/refunds"): (
        TERMINAL,
        {"amount": "1.00", "method": "cash", "card_number": "{card_number}"},
    ),
    ("POST", "/v1/sales/{sale_id}/returns"): (
        TERMINAL,
        {"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"},
    ),
    ("GET", "/v1/operations/{kind}/{operation_id}"): (READER, None),
    ("POST", "/v1/payments/{payment_id}/bonus-type"): (ADMIN, {"bonus_type": "none"}),
    ("POST", "/v1/sales/{sale_id}/revoke-discount"): (ADMIN, None),
    ("GET", "/v1/reports/payment-balance"): (ADMIN, None),
    ("GET", "/v1/reports/unpaid-goods"): (ADMIN, None),
    ("GET", "/v1/reports/aging"): (ADMIN, None),
    ("GET", "/v1/reports/bonus-statistics"): (ADMIN, None),
    ("GET", "/v1/customers/{customer_id}/statement"): (ADMIN, None),
    ("GET", "/v1/tasks"): (ADMIN, None),
    ("GET", "/v1/tasks/{task_id}"): (ADMIN, None),
    ("POST", "/v1/tasks/{task_id}/complete"): (ADMIN, {"outcome": "other", "note": "x"}),
    ("PUT", "/v1/webhook"): (ADMIN, {"url": "http://127.0.0.1:9/hook", "secret": "s" * 32}),
    ("DELETE", "/v1/webhook"): (ADMIN, None),
    ("POST", "/v1/users"): (
        ADMIN,
        {
            "email": "sec-user@example.ro",
            "name": "Sec",
            "role": "customer_service",
            "password": "a long enough password",
        },
    ),
    ("GET", "/v1/users"): (ADMIN, None),
    ("DELETE", "/v1/users/{user_id}"): (ADMIN, None),
    ("POST", "/v1/sessions"): (
        PUBLIC,
        {"email": "nobody@example.ro", "password": "not the password"},
    ),
    ("GET", "/v1/sessions/current"): (STAFF, None),
    ("DELETE", "/v1/sessions/current"): (STAFF, None),
}


def _openapi_operations(gateway: str) -> set[tuple[str, str]]:
    document = httpx.get(f"{gateway}/openapi.json", timeout=15).json()
    return {
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if path.startswith("/v1/") and method in ("get", "post", "put", "patch", "delete")
    }


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, Any]:
    """Chain A (objects: customer, card, sale, payment, task id) and chain B, each with a
    terminal in two stores."""
    gw = stack.gateway_url
    op = {"Authorization": f"Bearer {stack.operator_token}"}
    chains = []
    with httpx.Client(base_url=gw, timeout=30) as http:
        for label in ("A", "B"):
            made = http.post(
                "/v1/chains",
                headers=op,
                json={"name": f"Sec {label}", "currency": "EUR", "timezone": "Europe/Bucharest"},
            )
            assert made.status_code == 201, made.text
            admin = made.json()["admin_api_key"]
            auth = {"Authorization": f"Bearer {admin}"}
            terminals = []
            for store in ("S1", "S2"):
                st = http.post("/v1/stores", headers=auth, json={"code": store, "name": store})
                tm = http.post(
                    f"/v1/stores/{st.json()['store_id']}/terminals",
                    headers=auth,
                    json={"name": "Till"},
                )
                terminals.append(
                    (st.json()["store_id"], tm.json()["api_key"], tm.json()["terminal_id"])
                )
            card = f"SEC{label}-{uuid.uuid4().hex[:10]}"
            customer = http.post(
                "/v1/customers",
                headers=auth,
                json={
                    "name": f"Sec {label}",
                    "phone": "+40700000000",
                    "vip": True,
                    "card_number": card,
                },
            )
            assert customer.status_code == 201, customer.text
            email = f"staff-{uuid.uuid4().hex[:8]}@example.ro"
            user = http.post(
                "/v1/users",
                headers=auth,
                json={
                    "email": email,
                    "name": f"Staff {label}",
                    "role": "customer_service",
                    "password": "a long enough password",
                },
            )
            assert user.status_code == 201, user.text
            staff = http.post(
                "/v1/sessions", json={"email": email, "password": "a long enough password"}
            )
            assert staff.status_code == 201, staff.text
            chains.append(
                {
                    "chain_id": made.json()["chain_id"],
                    "admin": admin,
                    "terminals": terminals,
                    "card": card,
                    "customer_id": customer.json()["customer_id"],
                    "user_id": user.json()["user_id"],
                    "staff": staff.json()["access_token"],
                }
            )
        a = chains[0]
        term = {"Authorization": f"Bearer {a['terminals'][0][1]}"}
        sale = http.post(
            "/v1/sales",
            headers={**term, "Idempotency-Key": str(uuid.uuid4())},
            json={**SALE, "card_number": a["card"]},
        )
        assert sale.status_code == 201, sale.text
        a["sale_id"] = sale.json()["sale_id"]
        a["payment_id"] = sale.json()["payments"][0]["payment_id"]
    return {"A": chains[0], "B": chains[1], "gateway": gw, "operator": stack.operator_token}


def _fill(template: str, objects: dict[str, Any]) -> str:
    values = {
        "store_id": objects["terminals"][0][0],
        "customer_id": objects["customer_id"],
        "card_number": objects["card"],
        "sale_id": objects["sale_id"],
        "payment_id": objects["payment_id"],
        "kind": "sale",
        "operation_id": objects["sale_id"],
        "task_id": str(uuid.uuid4()),  # no task exists: 404 in every chain, still not 5xx
        "user_id": objects["user_id"],
        "chain_id": objects["chain_id"],
        "terminal_id": objects["terminals"][0][2],
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def _body(body: dict[str, Any] | None, objects: dict[str, Any]) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: _fill(v, objects) if isinstance(v, str) else v for k, v in body.items()}


def _call(
    http: httpx.Client, method: str, path: str, key: str | None, body: dict[str, Any] | None
) -> httpx.Response:
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return http.request(method, path, headers=headers, json=body)


def test_every_endpoint_is_in_the_matrix(world: dict[str, Any]) -> None:
    assert _openapi_operations(world["gateway"]) == set(MATRIX)


def test_no_key_a_bad_key_and_the_wrong_kind_of_key_get_401_and_403(
    world: dict[str, Any],
) -> None:
    a = world["A"]
    keys = {OPERATOR: world["operator"], ADMIN: a["admin"], TERMINAL: a["terminals"][0][1]}
    wrong: list[str] = []
    with httpx.Client(base_url=world["gateway"], timeout=30) as http:
        for (method, template), (kind, body) in sorted(MATRIX.items()):
            if kind == PUBLIC:
                continue
            path, filled = _fill(template, a), _body(body, a)
            for key in (None, "not-a-key", "x" * 43, "st." + "x" * 43):
                got = _call(http, method, path, key, filled)
                if got.status_code != 401 or got.json().get("code") != "unauthorized":
                    wrong.append(f"{method} {template} key={key!r}: {got.status_code}")
            allowed = {READER: {ADMIN, TERMINAL}}.get(kind, {kind})
            for other in {OPERATOR, ADMIN, TERMINAL} - allowed:
                got = _call(http, method, path, keys[other], filled)
                if got.status_code != 403 or got.json().get("code") != "forbidden":
                    wrong.append(f"{method} {template} with {other} key: {got.status_code}")
    assert wrong == []


def test_another_chains_keys_get_what_a_missing_object_gets(world: dict[str, Any]) -> None:
    a, b = world["A"], world["B"]
    wrong: list[str] = []
    with httpx.Client(base_url=world["gateway"], timeout=30) as http:
        for (method, template), (kind, body) in sorted(MATRIX.items()):
            if kind in (OPERATOR, PUBLIC):
                continue
            path, filled = _fill(template, a), _body(body, a)
            key = b["admin"] if kind in (ADMIN, READER) else b["terminals"][0][1]
            got = _call(http, method, path, key, filled)
            if "{" in template:  # a path naming chain A's object
                expected = (404, "card_not_found" if "card_number" in template else None)
            elif body and "card_number" in body:  # a sale naming chain A's card
                expected = (422, "card_not_found")
            else:  # chain-level endpoints: B sees only B (checked below), never A
                if a["customer_id"] in got.text or a["card"] in got.text:
                    wrong.append(f"{method} {template}: chain B sees chain A's data")
                continue
            code = got.json().get("code") if got.content else None
            if got.status_code != expected[0] or (expected[1] and code != expected[1]):
                wrong.append(f"{method} {template}: {got.status_code} {code}")
            if kind in (TERMINAL, READER) and "{" in template:
                # chain B's admin key on a reader endpoint was checked above; its terminal too
                got = _call(http, method, path, b["terminals"][1][1], filled)
                if got.status_code != 404:
                    wrong.append(f"{method} {template} (B terminal): {got.status_code}")
    assert wrong == []
    # and chain A's objects are untouched by all of that
    with httpx.Client(
        base_url=world["gateway"], timeout=30, headers={"Authorization": f"Bearer {a['admin']}"}
    ) as http:
        shown = http.get(f"/v1/customers/{a['customer_id']}").json()
        assert shown["name"] == "Sec A" and shown["card_number"] == a["card"]


def test_a_terminal_of_another_store_of_the_same_chain_serves_the_chains_customers(
    world: dict[str, Any],
) -> None:
    # customers may buy in any store of their chain (domain.md): the store does not isolate
    a = world["A"]
    with httpx.Client(
        base_url=world["gateway"],
        timeout=30,
        headers={"Authorization": f"Bearer {a['terminals'][1][1]}"},
    ) as http:
        assert http.get(f"/v1/cards/{a['card']}").status_code == 200
        assert http.get(f"/v1/sales/{a['sale_id']}").status_code == 200


# -- schemathesis ----------------------------------------------------------------------------


def test_fuzzing_the_openapi_document_finds_no_5xx_and_only_documented_answers(
    stack: Stack,
) -> None:
    """Schemathesis against the running gateway, fixed seed, bounded examples: every
    operation with the key kind it takes (so the generated input reaches validation and the
    use cases), on a chain of its own."""
    gw = stack.gateway_url
    op = {"Authorization": f"Bearer {stack.operator_token}"}
    made = httpx.post(
        f"{gw}/v1/chains",
        headers=op,
        timeout=30,
        json={"name": "Fuzz", "currency": "EUR", "timezone": "Europe/Bucharest"},
    ).json()
    admin = made["admin_api_key"]
    store = httpx.post(
        f"{gw}/v1/stores",
        headers={"Authorization": f"Bearer {admin}"},
        json={"code": "F", "name": "F"},
        timeout=30,
    ).json()
    terminal = httpx.post(
        f"{gw}/v1/stores/{store['store_id']}/terminals",
        timeout=30,
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "F"},
    ).json()["api_key"]
    staff = httpx.post(
        f"{gw}/v1/users",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
        json={
            "email": "fuzz-staff@example.ro",
            "name": "F",
            "role": "manager",
            "password": "a long password!",
        },
    )
    assert staff.status_code == 201, staff.text
    token = httpx.post(
        f"{gw}/v1/sessions",
        timeout=30,
        json={"email": "fuzz-staff@example.ro", "password": "a long password!"},
    ).json()["access_token"]
    keys = {
        OPERATOR: stack.operator_token,
        ADMIN: admin,
        TERMINAL: terminal,
        READER: admin,
        STAFF: token,
    }
    schema = schemathesis.openapi.from_url(f"{gw}/openapi.json", timeout=60)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        kind = MATRIX[(operation.method.upper(), operation.path)][0]
        headers = {} if kind == PUBLIC else {"Authorization": f"Bearer {keys[kind]}"}
        fuzz = _fuzzer(operation, headers, failures)
        fuzz()
    assert failures == []


def _fuzzer(operation: Any, headers: dict[str, str], failures: list[str]) -> Any:
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import checks

    @settings(
        max_examples=8,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        if case.path == "/v1/webhook" and isinstance(case.body, dict) and "url" in case.body:
            # the notifier resolves the host of a webhook URL: a generated name would be looked
            # up in the DNS, so the fuzzed URL keeps its path but names this machine (refused)
            case.body["url"] = "https://127.0.0.1:9/" + str(case.body["url"])[-20:]
        response = case.call(headers=headers, timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        try:
            case.validate_response(
                response, checks=[checks.status_code_conformance, checks.content_type_conformance]
            )
        except Exception as exc:  # schemathesis raises a group of the failed checks
            failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")

    return fuzz


# -- limits ----------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_also_when_sent_in_chunks(world: dict[str, Any]) -> None:
    a = world["A"]
    big = b'{"name": "' + b"x" * 1_100_000 + b'", "phone": "1"}'
    headers = {"Authorization": f"Bearer {a['admin']}", "Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    with httpx.Client(base_url=world["gateway"], timeout=30) as http:
        declared = http.post("/v1/customers", headers=headers, content=big)
        streamed = http.post("/v1/customers", headers=headers, content=chunks())
        listed = http.get("/v1/customers", headers=headers, params={"q": "x" * 50}).json()
    assert declared.status_code == 413, declared.text[:200]
    assert streamed.status_code == 413, streamed.text[:200]
    assert declared.json()["code"] == "payload_too_large"
    assert listed["items"] == []


def test_a_terminal_over_its_rate_gets_429_with_retry_after(
    world: dict[str, Any],
    stack: Stack,
) -> None:
    # a second gateway on the same databases with a small bucket (1 request per second,
    # bursts of 5): the limit then shows however slow this machine is; the stack's own gateway
    # keeps its generous default for the other tests
    port = free_port()
    instance = "gateway-ratelimit"
    stack.services.start_instance(
        "gateway",
        instance=instance,
        port=port,
        ready_timeout=180,
        extra_env={"GATEWAY_RATE_LIMIT_PER_SECOND": "1", "GATEWAY_RATE_LIMIT_BURST": "5"},
    )
    a = world["A"]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            term = {"Authorization": f"Bearer {a['terminals'][1][1]}"}
            answers = [http.get(f"/v1/cards/{a['card']}", headers=term) for _ in range(12)]
            admin = http.get("/v1/settings", headers={"Authorization": f"Bearer {a['admin']}"})
            other = http.get(
                f"/v1/cards/{a['card']}",
                headers={"Authorization": f"Bearer {a['terminals'][0][1]}"},
            )
    finally:
        stack.services.processes[instance].stop()
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert {r.status_code for r in answers} == {200, 429}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert limited[0].json()["code"] == "rate_limited"
    assert admin.status_code == 200  # per terminal key: others are not held back
    assert other.status_code == 200


def test_page_sizes_are_bounded(world: dict[str, Any]) -> None:
    with httpx.Client(
        base_url=world["gateway"],
        timeout=30,
        headers={"Authorization": f"Bearer {world['A']['admin']}"},
    ) as http:
        assert http.get("/v1/customers", params={"limit": 500}).status_code == 200
        for path in ("/v1/customers", "/v1/tasks"):
            for limit in (501, 100000, 0, -1):
                got = http.get(path, params={"limit": limit})
                assert got.status_code == 422, (path, limit, got.status_code)


# -- secrets ---------------------------------------------------------------------------------


def test_api_keys_are_stored_only_as_hashes(world: dict[str, Any], stack: Stack) -> None:
    a = world["A"]
    secrets_in_clear = [a["admin"], *(key for _, key, _ in a["terminals"]), world["operator"]]
    url = stack.env.get("GATEWAY_DATABASE_URL") or with_database(stack.database_url, "gateway")

    async def dump() -> str:
        conn = await asyncpg.connect(url)
        try:
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            rows = []
            for t in tables:
                rows += await conn.fetch(f'SELECT row_to_json(x)::text AS j FROM "{t[0]}" x')
            hashes = await conn.fetch("SELECT key_hash FROM api_keys")
            return "\n".join(r["j"] for r in rows) + "\n#" + ",".join(h[0] for h in hashes)
        finally:
            await conn.close()

    everything = asyncio.run(dump())
    for secret in secrets_in_clear:
        assert secret not in everything
    assert hashlib.sha256(a["admin"].encode()).hexdigest() in everything.split("#")[-1]


def test_outside_dev_the_gateway_refuses_to_start_without_an_operator_token(
    stack: Stack,
) -> None:
    env = {
        k: v for k, v in stack.env.items() if k not in ("OPERATOR_TOKEN", "GATEWAY_OPERATOR_TOKEN")
    }
    env.update({"APP_ENV": "production", "GATEWAY_PORT": str(free_port())})
    started = subprocess.run(
        [sys.executable, "-m", "pos_gateway"],
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode != 0
    assert "OPERATOR_TOKEN" in started.stdout + started.stderr


def test_no_setting_named_like_a_secret_has_a_usable_default() -> None:
    from pydantic import SecretStr

    import credit.config
    import loyalty.config
    import notifier.config
    import pos_gateway.config
    import reporting.config
    from servicekit.settings import ServiceSettings

    found = []
    for module in (
        pos_gateway.config,
        credit.config,
        loyalty.config,
        reporting.config,
        notifier.config,
    ):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, ServiceSettings):
                for name, info in cls.model_fields.items():
                    default = info.default
                    if isinstance(default, SecretStr):  # an empty SecretStr is no default
                        default = default.get_secret_value()
                    if any(w in name for w in ("secret", "token", "password")) and (
                        default not in ("", None)
                    ):
                        found.append(f"{cls.__module__}.{name}")
    assert found == []


# -- payment card numbers --------------------------------------------------------------------


def test_payment_card_numbers_are_refused_and_never_logged(
    world: dict[str, Any],
    stack: Stack,
) -> None:
    a = world["A"]
    pans = [
        "4111111111111111",
        "5555-5555-5555-4444",
        "378282246310005",
        "6011111111111117",
        "2223003122003222",
    ]
    with httpx.Client(
        base_url=world["gateway"], timeout=30, headers={"Authorization": f"Bearer {a['admin']}"}
    ) as http:
        before = http.get("/v1/customers", params={"limit": 500}).json()["items"]
        for pan in pans:
            made = http.post("/v1/customers", json={"name": "P", "phone": "1", "card_number": pan})
            issued = http.post(f"/v1/customers/{a['customer_id']}/cards", json={"card_number": pan})
            for got in (made, issued):
                assert got.status_code == 422, got.text
                assert got.json()["code"] == "validation_error"
                assert got.json()["errors"][0]["field"] == "card_number"
        after = http.get("/v1/customers", params={"limit": 500}).json()["items"]
        assert after == before
        # traffic naming loyalty cards in paths and bodies, then the logs
        term = {"Authorization": f"Bearer {a['terminals'][0][1]}"}
        http.get(f"/v1/cards/{a['card']}", headers=term)
        http.get("/v1/cards/4111111111111111", headers=term)
    time.sleep(1.0)
    logs = "".join(p.read_text(errors="replace") for p in (stack.run_dir / "logs").glob("*.log"))
    for number in [*pans, "4111111111111111", a["card"], world["B"]["card"]]:
        assert number not in logs, f"card number {number} is in the logs"


# -- bad input records nothing ----------------------------------------------------------------


def _snapshot(http: httpx.Client, customers: list[str]) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    period = {"from": str(today - timedelta(days=120)), "to": str(today + timedelta(days=1))}
    return {
        "customers": [http.get(f"/v1/customers/{c}").json() for c in customers],
        "statements": [
            http.get(f"/v1/customers/{c}/statement", params=period).json() for c in customers
        ],
        "payment_balance": http.get("/v1/reports/payment-balance", params=period).json(),
        "unpaid": http.get("/v1/reports/unpaid-goods").json(),
        "aging": http.get("/v1/reports/aging").json(),
        "bonus": http.get("/v1/reports/bonus-statistics", params=period).json(),
        "open": http.get("/v1/tasks", params={"status": "open"}).json(),
        "done": http.get("/v1/tasks", params={"status": "done"}).json(),
    }


def test_every_refusal_and_validation_error_leaves_nothing_behind(
    new_chain: Callable[..., Any],
    eventually: Callable[..., Any],
) -> None:
    chain = new_chain(block_credit_when_overdue=True, overdue_discount="offer")
    vip = chain.customer(credit_limit="100.00")
    plain = chain.customer(vip=False)
    blocked = chain.customer()
    overdue = chain.customer()
    term, admin = chain.terminal, chain.admin

    def idem() -> dict[str, str]:
        return {"Idempotency-Key": str(uuid.uuid4())}

    def sale(
        card: str | None, payments: list[dict[str, str]], total: str = "50.00", **extra: Any
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "lines": [{"name": "Dress", "quantity": "1", "unit_price": total, "discount": "5.00"}],
            "payments": payments,
            **extra,
        }
        if card:
            body["card_number"] = card
        return term.post("/v1/sales", headers=idem(), json=body)

    # set-up that is allowed to record: a paid sale with a discount, an overdue debt
    paid = sale(vip["card_number"], [{"method": "cash", "amount": "45.00"}])
    assert paid.status_code == 201, paid.text
    old = (datetime.now(UTC) - timedelta(days=45)).isoformat()
    late = sale(
        overdue["card_number"], [{"method": "on_account", "amount": "45.00"}], occurred_at=old
    )
    assert late.status_code == 201, late.text
    assert admin.post(f"/v1/cards/{blocked['card_number']}/block").status_code == 200
    eventually(
        lambda: admin.get(f"/v1/customers/{overdue['customer_id']}").json()["overdue"], timeout=15
    )
    eventually(
        lambda: admin.get("/v1/tasks", params={"status": "open"}).json()["items"], timeout=15
    )
    ids = [vip["customer_id"], plain["customer_id"], blocked["customer_id"], overdue["customer_id"]]
    eventually(
        lambda: admin.get(f"/v1/customers/{vip['customer_id']}").json()["bonus_balance"] == "4.50",
        timeout=15,
    )
    # the set-up's last effects (discount offers, statements, statistics) have all landed when
    # two snapshots in a row agree
    previous: list[dict[str, Any]] = [_snapshot(admin, ids)]

    def settled() -> dict[str, Any] | None:
        now = _snapshot(admin, ids)
        same = now == previous[0]
        previous[0] = now
        return now if same else None

    before = eventually(settled, timeout=15, interval=0.3)
    sale_id = paid.json()["sale_id"]
    cash = [{"method": "cash", "amount": "45.00"}]
    refusals: list[tuple[str, httpx.Response]] = [
        ("card_not_found", sale("NO-SUCH-CARD", cash)),
        ("card_blocked", sale(blocked["card_number"], cash)),
        ("card_required", sale(None, [{"method": "on_account", "amount": "45.00"}])),
        ("not_vip", sale(plain["card_number"], [{"method": "on_account", "amount": "45.00"}])),
        ("insufficient_bonus", sale(vip["card_number"], [{"method": "bonus", "amount": "45.00"}])),
        (
            "insufficient_advance",
            sale(vip["card_number"], [{"method": "advance", "amount": "45.00"}]),
        ),
        (
            "credit_limit_exceeded",
            sale(
                vip["card_number"], [{"method": "on_account", "amount": "995.00"}], total="1000.00"
            ),
        ),
        (
            "credit_blocked_overdue",
            sale(overdue["card_number"], [{"method": "on_account", "amount": "45.00"}]),
        ),
        ("payment_mismatch", sale(vip["card_number"], [{"method": "card", "amount": "1.00"}])),
        (
            "no_debt",
            term.post(
                f"/v1/customers/{vip['customer_id']}/payments",
                headers=idem(),
                json={"kind": "pay_debt", "method": "cash", "card_number": vip["card_number"]},
            ),
        ),
        (
            "insufficient_advance",
            term.post(
                f"/v1/customers/{vip['customer_id']}/refunds",
                headers=idem(),
                json={"amount": "1.00", "method": "cash", "card_number": vip["card_number"]},
            ),
        ),
        (
            "return_exceeds_sold",
            term.post(
                f"/v1/sales/{sale_id}/returns",
                headers=idem(),
                json={"lines": [{"line_no": 1, "quantity": "2"}], "refund": "cash"},
            ),
        ),
        ("not_overdue", admin.post(f"/v1/sales/{sale_id}/revoke-discount", headers=idem())),
        (
            "validation_error",
            term.post(
                "/v1/sales",
                headers=idem(),
                json={
                    "lines": [{"name": "D", "quantity": "1", "unit_price": 10.0}],
                    "payments": [{"method": "cash", "amount": "10.00"}],
                },
            ),
        ),
        ("validation_error", term.post("/v1/sales", json={**SALE})),  # no Idempotency-Key
        ("validation_error", term.post("/v1/sales", headers=idem(), json={**SALE, "x": 1})),
        (
            "validation_error",
            admin.post("/v1/customers", json={"name": "Bad", "phone": "1", "credit_limit": 5}),
        ),
        (
            "validation_error",
            admin.post(
                "/v1/customers",
                json={"name": "Pan", "phone": "1", "card_number": "4111111111111111"},
            ),
        ),
        (
            "validation_error",
            term.post(
                f"/v1/customers/{vip['customer_id']}/advances",
                headers=idem(),
                json={"amount": "-5.00", "method": "cash", "card_number": vip["card_number"]},
            ),
        ),
    ]
    key = str(uuid.uuid4())
    first = term.post(
        f"/v1/customers/{vip['customer_id']}/payments",
        headers={"Idempotency-Key": key},
        json={"kind": "pay_debt", "method": "cash", "card_number": vip["card_number"]},
    )
    assert first.json()["code"] == "no_debt"
    refusals.append(
        (
            "idempotency_conflict",
            term.post(
                f"/v1/customers/{vip['customer_id']}/payments",
                headers={"Idempotency-Key": key},
                json={"kind": "pay_debt", "method": "card", "card_number": vip["card_number"]},
            ),
        )
    )
    wrong = [
        f"{code}: {r.status_code} {r.text[:200]}"
        for code, r in refusals
        if r.json().get("code") != code
    ]
    assert wrong == []
    time.sleep(2.0)  # anything wrongly published would reach the read models by now
    assert _snapshot(admin, ids) == before
