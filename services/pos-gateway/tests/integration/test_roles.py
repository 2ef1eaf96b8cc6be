"""What each staff role may call, walked over every route of the gateway's OpenAPI.

The routes come from the app's own route table (`/openapi.json`), so a route added later is
walked too: customer service is refused it unless it is added to the allowed list of api.md
below on purpose, and a manager must be allowed whatever the chain admin key is allowed.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"

#: api.md: customer service "may read customers, cards, reports, statements and tasks,
#: complete tasks, revoke a discount where offered and cancel a payment's accrual". Reading a
#: sale and an operation's status belong to that too: the Customer page shows a customer's
#: sales, and a bonus-type or revoke-discount answered 202 is followed at its status URL.
CUSTOMER_SERVICE_MAY = {
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{customer_id}"),
    ("GET", "/v1/cards/{card_number}"),
    ("GET", "/v1/customers/{customer_id}/statement"),
    ("GET", "/v1/reports/payment-balance"),
    ("GET", "/v1/reports/unpaid-goods"),
    ("GET", "/v1/reports/aging"),
    ("GET", "/v1/reports/bonus-statistics"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/{task_id}"),
    ("POST", "/v1/tasks/{task_id}/complete"),
    ("POST", "/v1/sales/{sale_id}/revoke-discount"),
    ("POST", "/v1/payments/{payment_id}/bonus-type"),
    ("GET", "/v1/sales/{sale_id}"),
    ("GET", "/v1/operations/{kind}/{operation_id}"),
    # its own session
    ("GET", "/v1/sessions/current"),
    ("DELETE", "/v1/sessions/current"),
}

#: routes only a staff user's own token makes sense on (the admin key has no session)
STAFF_SESSION_ROUTES = {("GET", "/v1/sessions/current"), ("DELETE", "/v1/sessions/current")}


def _operations(app_schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = [
        (method.upper(), path, op)
        for path, item in app_schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    # signing out ends the token: walk it last
    return sorted(ops, key=lambda o: (o[0], o[1]) == ("DELETE", "/v1/sessions/current"))


def _path(template: str, op: dict[str, Any]) -> str:
    params = {
        p["name"]: p.get("schema", {}) for p in op.get("parameters", []) if p.get("in") == "path"
    }

    def value(match: re.Match[str]) -> str:
        schema = params.get(match.group(1), {})
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        if "enum" in schema:
            return str(schema["enum"][0])
        return "CARD-404"

    return re.sub(r"\{([^}]+)\}", value, template)


async def _call(
    client: httpx.AsyncClient, method: str, template: str, op: dict[str, Any], key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers["Idempotency-Key"] = str(uuid.uuid4())
    json_body = {} if "requestBody" in op else None
    return await client.request(method, _path(template, op), json=json_body, headers=headers)


def _forbidden(response: httpx.Response) -> bool:
    if response.status_code == 403 and response.json().get("code") == "forbidden":
        return True
    assert response.status_code != 401, response.text  # a valid key is never unauthorized
    return False


async def _token(harness: Any, admin: str, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@kids.example.ro"
    made = await harness.client.post(
        "/v1/users",
        json={"email": email, "name": role, "role": role, "password": PASSWORD},
        headers=harness.auth(admin),
    )
    assert made.status_code == 201, made.text
    signed = await harness.client.post("/v1/sessions", json={"email": email, "password": PASSWORD})
    assert signed.status_code == 201, signed.text
    return str(signed.json()["access_token"])


async def _walk(harness: Any, role: str) -> tuple[dict[tuple[str, str], bool], set[Any]]:
    """For every route that needs a key: is the admin key forbidden there, is `role`?"""
    admin, _ = await harness.setup()
    # revoking a discount is offered to customer service only under this policy
    offered = await harness.client.put(
        "/v1/settings", json={"overdue_discount": "offer"}, headers=harness.auth(admin)
    )
    assert offered.status_code == 200
    token = await _token(harness, admin, role)
    schema = (await harness.client.get("/openapi.json")).json()
    admin_forbidden: dict[tuple[str, str], bool] = {}
    role_allowed: set[tuple[str, str]] = set()
    for method, template, op in _operations(schema):
        if (await _call(harness.client, method, template, op, None)).status_code != 401:
            continue  # needs no key (signing in)
        admin_forbidden[(method, template)] = _forbidden(
            await _call(harness.client, method, template, op, admin)
        )
        if not _forbidden(await _call(harness.client, method, template, op, token)):
            role_allowed.add((method, template))
    return admin_forbidden, role_allowed


async def test_customer_service_may_call_exactly_the_routes_api_md_allows_it(
    harness: Any,
) -> None:
    admin_forbidden, allowed = await _walk(harness, "customer_service")
    walked = set(admin_forbidden)
    assert walked >= CUSTOMER_SERVICE_MAY, CUSTOMER_SERVICE_MAY - walked
    # the walk reached the chain admin's routes that customer service must not touch
    for must_refuse in [
        ("GET", "/v1/settings"),
        ("PUT", "/v1/settings"),
        ("POST", "/v1/stores"),
        ("POST", "/v1/users"),
        ("GET", "/v1/users"),
        ("DELETE", "/v1/users/{user_id}"),
        ("POST", "/v1/customers"),
        ("PATCH", "/v1/customers/{customer_id}"),
        ("PUT", "/v1/webhook"),
    ]:
        assert must_refuse in walked and must_refuse not in allowed
    assert allowed == CUSTOMER_SERVICE_MAY, (
        f"allowed but not in api.md's list: {sorted(allowed - CUSTOMER_SERVICE_MAY)}; "
        f"refused though listed: {sorted(CUSTOMER_SERVICE_MAY - allowed)}"
    )


async def test_a_manager_may_call_every_route_the_chain_admin_key_may_and_no_other(
    harness: Any,
) -> None:
    admin_forbidden, allowed = await _walk(harness, "manager")
    admin_may = {route for route, forbidden in admin_forbidden.items() if not forbidden}
    assert ("POST", "/v1/users") in admin_may and ("PUT", "/v1/settings") in admin_may
    assert allowed == admin_may | STAFF_SESSION_ROUTES, (
        f"admin may, manager refused: {sorted(admin_may - allowed)}; "
        f"manager may, admin refused: {sorted(allowed - admin_may - STAFF_SESSION_ROUTES)}"
    )
