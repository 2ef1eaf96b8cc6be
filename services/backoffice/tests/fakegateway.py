"""An in-memory stand-in for the gateway's public API, for the back office's unit tests.

It answers the paths, fields and codes of api.md that the back office uses, with data the test
puts in `FakeGateway`; the real gateway is exercised by the browser test (tests/e2e). It runs
in the test's process through httpx's ASGI transport: no port, no network.
"""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


def problem(status: int, code: str, detail: str = "", **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"status": status, "title": code, "detail": detail, "code": code, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers={"Retry-After": "30"} if code == "rate_limited" else None,
    )


class _Refused(Exception):
    """A request the caller may not make: its answer is `response` (401 or 403)."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


@dataclass
class FakeUser:
    user_id: str
    email: str
    name: str
    role: str
    password: str
    chain_id: str = "00000000-0000-4000-8000-000000000001"


@dataclass
class FakeGateway:
    """The state the fake answers from; tests change it directly."""

    users: dict[str, FakeUser] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user_id
    settings: dict[str, Any] = field(
        default_factory=lambda: {
            "credit_mode": "balance",
            "max_payment_delay_days": 30,
            "overdue_discount": "keep",
            "block_credit_when_overdue": False,
            "reminder_repeat_days": 7,
            "bonus_rate_percent": "10.00",
            "bonus_expiry_days": None,
        }
    )
    customers: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    stores: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    #: what the back office sent: (method, path, headers, json)
    calls: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    #: the session answer's `chain` (None: an answer without it, as api.md allows)
    chain: dict[str, Any] | None = field(
        default_factory=lambda: {
            "chain_id": "00000000-0000-4000-8000-000000000001",
            "name": "Fake chain",
            "currency": "EUR",
            "timezone": "Europe/Bucharest",
        }
    )
    down: bool = False
    #: rows every report answers with instead of the computed ones (e.g. malformed ones)
    report_rows: list[dict[str, Any]] | None = None

    def add_user(self, email: str, name: str, role: str, password: str) -> FakeUser:
        user = FakeUser(str(uuid.uuid4()), email, name, role, password)
        self.users[user.user_id] = user
        return user

    def add_customer(self, name: str, **fields: Any) -> dict[str, Any]:
        customer = {
            "customer_id": str(uuid.uuid4()),
            "name": name,
            "phone": "+40712345678",
            "email": None,
            "vip": True,
            "card_number": f"C{len(self.customers):05d}",
            "bonus_accrual": True,
            "credit_limit": None,
            "max_payment_delay_days": None,
            "debt": "0.00",
            "advance": "0.00",
            "bonus_balance": "0.00",
            "credit_available": None,
            "overdue": False,
        }
        customer.update(fields)
        self.customers.append(customer)
        return customer

    def add_task(self, customer: dict[str, Any], **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        task = {
            "task_id": str(uuid.uuid4()),
            "customer_id": customer["customer_id"],
            "customer_name": customer["name"],
            "phone": customer["phone"],
            "level": 1,
            "status": "open",
            "overdue_amount": "120.50",
            "days_overdue": 3,
            "sales": [
                {"sale_id": str(uuid.uuid4()), "due_date": "2026-01-10", "amount_owed": "120.50"}
            ],
            "created_at": now.isoformat(),
            "raised_at": now.isoformat(),
            "closed_at": None,
            "closed_reason": None,
            "outcome": None,
            "note": None,
            "actions": [],
            "completed_by": None,
        }
        task.update(fields)
        self.tasks.append(task)
        return task


def _page(items: list[Any], request: Request) -> dict[str, Any]:
    try:
        limit = int(request.query_params.get("limit") or 50)
        start = int(request.query_params.get("cursor") or 0)
    except ValueError:  # the gateway's answer to a cursor it did not make
        raise _Refused(
            problem(
                422,
                "validation_error",
                "cursor",
                errors=[{"field": "cursor", "message": "invalid"}],
            )
        ) from None
    chunk = items[start : start + limit]
    nxt = str(start + limit) if start + limit < len(items) else None
    return {"items": chunk, "next": nxt}


def _csv(rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv")


def build_app(state: FakeGateway) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        body = await request.body()
        state.calls.append(
            (
                request.method,
                request.url.path,
                dict(request.headers),
                body.decode() if body else None,
            )
        )
        if state.down:
            return problem(503, "unavailable", "a service behind the gateway is down")
        return await call_next(request)  # type: ignore[no-any-return]

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> Response:
        return exc.response

    def who(request: Request) -> FakeUser:
        """The signed-in caller (else the request is answered 401)."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        user_id = state.tokens.get(token)
        if user_id is None or user_id not in state.users:
            raise _Refused(problem(401, "unauthorized", "unknown key"))
        return state.users[user_id]

    def manager(request: Request) -> FakeUser:
        """The signed-in caller, a manager (else the request is answered 401 or 403)."""
        user = who(request)
        if user.role != "manager":
            raise _Refused(problem(403, "forbidden", "managers only"))
        return user

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/sessions")
    async def sessions(request: Request) -> Response:
        body = await request.json()
        email = str(body.get("email", "")).lower()
        if state.failures.get(email, 0) >= 5:
            return problem(429, "rate_limited", "too many failures")
        for user in state.users.values():
            if user.email.lower() == email and user.password == body.get("password"):
                token = secrets.token_urlsafe(24)
                state.tokens[token] = user.user_id
                expires = datetime.now(UTC) + timedelta(hours=8)
                answer: dict[str, Any] = {
                    "access_token": token,
                    "expires_at": expires.isoformat(),
                    "user": {
                        "user_id": user.user_id,
                        "email": user.email,
                        "name": user.name,
                        "role": user.role,
                        "chain_id": user.chain_id,
                    },
                }
                if state.chain is not None:
                    answer["chain"] = state.chain
                return JSONResponse(answer, status_code=201)
        state.failures[email] = state.failures.get(email, 0) + 1
        return problem(401, "unauthorized", "wrong email or password")

    @app.delete("/v1/sessions/current")
    async def sign_out(request: Request) -> Response:
        who(request)
        state.tokens.pop(request.headers["authorization"].removeprefix("Bearer "), None)
        return Response(status_code=204)

    @app.get("/v1/settings")
    async def get_settings(request: Request) -> Response:
        manager(request)
        return JSONResponse(state.settings)

    @app.put("/v1/settings")
    async def put_settings(request: Request) -> Response:
        manager(request)
        body = await request.json()
        errors = []
        if body.get("credit_mode") not in ("balance", "per_sale", "per_item"):
            errors.append({"field": "credit_mode", "message": "unknown credit mode"})
        if not isinstance(body.get("max_payment_delay_days"), int):
            errors.append({"field": "max_payment_delay_days", "message": "must be a number"})
        if errors:
            return problem(422, "validation_error", "invalid settings", errors=errors)
        state.settings.update(body)
        return JSONResponse(state.settings)

    @app.get("/v1/tasks")
    async def tasks(request: Request) -> Response:
        who(request)
        status = request.query_params.get("status", "open")
        chosen = [t for t in state.tasks if t["status"] == status]
        return JSONResponse(_page(chosen, request))

    @app.get("/v1/tasks/{task_id}")
    async def one_task(task_id: str, request: Request) -> Response:
        who(request)
        for task in state.tasks:
            if task["task_id"] == task_id:
                return JSONResponse(task)
        return problem(404, "not_found")

    @app.post("/v1/tasks/{task_id}/complete")
    async def complete(task_id: str, request: Request) -> Response:
        user = who(request)
        body = await request.json()
        if body.get("outcome") not in ("promised", "no_answer", "disputed", "other"):
            return problem(
                422,
                "validation_error",
                "bad outcome",
                errors=[{"field": "outcome", "message": "unknown outcome"}],
            )
        for task in state.tasks:
            if task["task_id"] == task_id:
                task.update(
                    status="done",
                    closed_reason="completed",
                    outcome=body["outcome"],
                    note=body.get("note"),
                    closed_at=datetime.now(UTC).isoformat(),
                    completed_by={"user_id": user.user_id, "name": user.name},
                )
                return JSONResponse(task)
        return problem(404, "not_found")

    @app.get("/v1/customers")
    async def customers(request: Request) -> Response:
        who(request)
        q = (request.query_params.get("q") or "").lower()
        vip = request.query_params.get("vip")
        chosen = [
            c
            for c in state.customers
            if (
                not q
                or q in c["name"].lower()
                or q in (c["phone"] or "")
                or q in (c["card_number"] or "").lower()
            )
            and (vip is None or str(c["vip"]).lower() == vip)
        ]
        return JSONResponse(_page(chosen, request))

    def find(customer_id: str) -> dict[str, Any] | None:
        return next((c for c in state.customers if c["customer_id"] == customer_id), None)

    @app.get("/v1/customers/{customer_id}")
    async def customer(customer_id: str, request: Request) -> Response:
        who(request)
        found = find(customer_id)
        return JSONResponse(found) if found else problem(404, "not_found")

    @app.get("/v1/cards/{card}")
    async def card(card: str, request: Request) -> Response:
        who(request)
        found = next((c for c in state.customers if c["card_number"] == card), None)
        if found is None:
            return problem(404, "card_not_found")
        return JSONResponse({**found, "open_sales": found.get("open_sales", [])})

    @app.get("/v1/customers/{customer_id}/statement")
    async def statement(customer_id: str, request: Request) -> Response:
        who(request)
        found = find(customer_id)
        if found is None:
            return problem(404, "not_found")
        if request.query_params.get("from", "") > request.query_params.get("to", "9999"):
            return problem(
                422,
                "validation_error",
                "from after to",
                errors=[{"field": "from", "message": "must not be after to"}],
            )
        entries = found.get("entries", [])
        if request.headers.get("accept") == "text/csv":
            return _csv(entries)
        zero = {"debt": "0.00", "advance": "0.00", "bonus_balance": "0.00"}
        return JSONResponse(
            {
                "customer_id": customer_id,
                "opening": zero,
                "entries": entries,
                "closing": zero,
                "next": None,
            }
        )

    @app.post("/v1/customers/{customer_id}/cards")
    async def issue(customer_id: str, request: Request) -> Response:
        manager(request)
        body = await request.json()
        if not body.get("card_number"):
            return problem(
                422,
                "validation_error",
                "card",
                errors=[{"field": "card_number", "message": "required"}],
            )
        found = find(customer_id)
        if found is None:
            return problem(404, "not_found", "no such customer")
        found["card_number"] = body["card_number"]
        return JSONResponse(
            {"customer_id": customer_id, "card_number": body["card_number"]}, status_code=201
        )

    @app.post("/v1/payments/{payment_id}/bonus-type")
    async def bonus_type(payment_id: str, request: Request) -> Response:
        who(request)
        return JSONResponse({"payment_id": payment_id, "bonus_cancelled": "1.00", "customer": {}})

    @app.get("/v1/reports/{name}")
    async def report(name: str, request: Request) -> Response:
        who(request)
        rows = [
            {
                "customer_id": c["customer_id"],
                "name": c["name"],
                "opening": "0.00",
                "goods": "100.00",
                "payments": "40.00",
                "closing": "-60.00",
            }
            for c in state.customers
        ]
        if state.report_rows is not None:
            rows = state.report_rows
        if request.headers.get("accept") == "text/csv":
            return _csv(rows)
        if name == "payment-balance":
            totals = {
                "opening": "0.00",
                "goods": "100.00",
                "payments": "40.00",
                "closing": "-60.00",
            }
            return JSONResponse({"rows": rows, "totals": totals, "next": None})
        if name == "aging":
            totals = dict.fromkeys(
                ("current", "d1_30", "d31_60", "d61_90", "d90_plus", "total"), "10.00"
            )
            return JSONResponse({"rows": [], "totals": totals, "next": None})
        if name == "bonus-statistics":
            movements = dict.fromkeys(
                ("accrued", "spent", "cancelled", "reversed", "restored", "expired"), "1.00"
            )
            # the API names each store and customer (customer service may not list stores)
            by_store = [
                {
                    "store_id": "5a0e0000-0000-4000-8000-000000000001",
                    "name": "Mall <Nord>",
                    **movements,
                }
            ]
            by_customer = [
                {"customer_id": c["customer_id"], "name": c["name"], **movements, "balance": "1.00"}
                for c in state.customers[:50]
            ]
            return JSONResponse(
                {
                    **movements,
                    "outstanding": "5.00",
                    "by_store": by_store,
                    "by_customer": by_customer,
                    "next": None,
                }
            )
        return JSONResponse({"rows": [], "next": None})

    @app.get("/v1/stores")
    async def stores(request: Request) -> Response:
        manager(request)
        return JSONResponse(_page(state.stores, request))

    @app.post("/v1/stores/{store_id}/terminals")
    async def terminal(store_id: str, request: Request) -> Response:
        manager(request)
        body = await request.json()
        terminal_id = str(uuid.uuid4())
        for store in state.stores:
            if store["store_id"] == store_id:
                store["terminals"].append(
                    {
                        "terminal_id": terminal_id,
                        "name": body["name"],
                        "created_at": datetime.now(UTC).isoformat(),
                        "revoked_at": None,
                    }
                )
        return JSONResponse(
            {"terminal_id": terminal_id, "api_key": "key-" + terminal_id}, status_code=201
        )

    @app.get("/v1/users")
    async def users(request: Request) -> Response:
        manager(request)
        items = [
            {"user_id": u.user_id, "email": u.email, "name": u.name, "role": u.role}
            for u in state.users.values()
        ]
        return JSONResponse(_page(items, request))

    @app.post("/v1/users")
    async def create_user(request: Request) -> Response:
        manager(request)
        body = await request.json()
        if len(body.get("password", "")) < 12:
            return problem(
                422,
                "validation_error",
                "password",
                errors=[{"field": "password", "message": "at least 12 characters"}],
            )
        created = state.add_user(body["email"], body["name"], body["role"], body["password"])
        return JSONResponse(
            {
                "user_id": created.user_id,
                "email": created.email,
                "name": created.name,
                "role": created.role,
            },
            status_code=201,
        )

    return app
