"""The public routes of api.md. Each translates HTTP into a use case call and back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway import schemas as s
from pos_gateway.bootstrap import Gateway
from pos_gateway.domain.auth import KeyKind, Principal
from pos_gateway.domain.errors import GatewayError, ValidationFailed, invalid, not_found
from pos_gateway.entrypoints.api.auth import (
    AdminKey,
    BackOfficeKey,
    ChainReader,
    OperatorKey,
    OptionalIdempotencyKey,
    RequiredIdempotencyKey,
    TerminalKey,
    TerminalKeyCheckedLater,
    gateway,
    gateway_dependency,
)
from pos_gateway.entrypoints.api.problems import PROBLEM_MEDIA_TYPE
from pos_gateway.service_layer import keys, masterdata, operations
from pos_gateway.service_layer.common import (
    load_chain,
    load_customer,
    request_and_body_hash,
    request_hash,
)
from pos_gateway.service_layer.runner import Answer, KeyIssuer, key_issuer, run_idempotent

Gw = Annotated[Gateway, Depends(gateway_dependency)]
_Route = TypeVar("_Route", bound=Callable[..., Any])

_PROBLEM = {"model": s.Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "Missing or invalid key (`unauthorized`)",
        403: "A key of the wrong kind (`forbidden`)",
        404: "Not found (also for another chain's objects)",
        409: "`idempotency_conflict` (or `already_revoked`)",
        422: "`validation_error` or a refusal code",
        429: "Too many requests (`rate_limited`)",
        503: "A service the answer depends on is unavailable (`unavailable`)",
    }
    return {st: {**_PROBLEM, "description": described.get(st, "Problem")} for st in statuses}


AUTH = (401, 403)


def to_response(answer: Answer) -> JSONResponse:
    media = PROBLEM_MEDIA_TYPE if answer.status >= 400 else "application/json"
    return JSONResponse(
        answer.body, status_code=answer.status, media_type=media, headers=answer.headers or None
    )


async def _body_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    # `Request.json` keeps what it parsed: a JSON body FastAPI has parsed for the route's model
    # is not parsed again (the same `json.loads` of the same bytes otherwise)
    try:
        return await request.json()
    except ValueError as exc:
        # a route without a body of its own (a card blocked, a new key): FastAPI never parsed
        # what was sent, so it is refused here, as a route with a body refuses it
        raise invalid("body", "the body is not valid JSON") from exc


async def _hash(request: Request) -> str:
    return request_hash(request.method, request.url.path, await _body_json(request))


@dataclass(frozen=True)
class Once:
    """A state-changing call of the back office or the operator, run once per
    `Idempotency-Key` (optional here; the request's hash its fingerprint under the key)."""

    request: Request
    gw: Gateway
    principal: Principal
    idempotency_key: str | None

    async def run(self, work: Callable[[AsyncSession], Awaitable[Answer]]) -> JSONResponse:
        """`work` run once per key, answered."""
        answer = await run_idempotent(
            self.gw, self.principal, self.idempotency_key, await _hash(self.request), work
        )
        return to_response(answer)

    async def issuing_a_key(
        self, secret_field: str, work: Callable[[AsyncSession, KeyIssuer], Awaitable[Answer]]
    ) -> JSONResponse:
        """Like `run` for work that makes an API key with the request's `key_issuer`: the
        answer's `secret_field` holds the key (shown again on a retry with the same key)."""
        fingerprint = await _hash(self.request)
        issue = key_issuer(self.gw, self.principal, self.idempotency_key, fingerprint)
        answer = await run_idempotent(
            self.gw,
            self.principal,
            self.idempotency_key,
            fingerprint,
            lambda session: work(session, issue),
            secret_field=secret_field,
            issue=issue,
        )
        return to_response(answer)


async def _admin_once(
    request: Request, gw: Gw, principal: AdminKey, idempotency_key: OptionalIdempotencyKey
) -> Once:
    return Once(request, gw, principal, idempotency_key)


async def _operator_once(
    request: Request, gw: Gw, principal: OperatorKey, idempotency_key: OptionalIdempotencyKey
) -> Once:
    return Once(request, gw, principal, idempotency_key)


#: an admin's call once per `Idempotency-Key`
AdminOnce = Annotated[Once, Depends(_admin_once)]
#: the operator's call once per `Idempotency-Key`
OperatorOnce = Annotated[Once, Depends(_operator_once)]


router = APIRouter(prefix="/v1")


# --------------------------------------------------------------------------- chains


Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=1000)]


@router.post(
    "/chains",
    status_code=201,
    response_model=s.ChainCreated,
    tags=["chains"],
    responses=problems(*AUTH, 409, 422),
)
async def create_chain(
    once: OperatorOnce,
    body: s.ChainCreate,
) -> JSONResponse:
    """Create a chain (operator key); the answer shows its admin key once."""
    return await once.issuing_a_key(
        "admin_api_key",
        lambda session, issue: masterdata.register_chain(session, body, issue),
    )


@router.get("/chains", response_model=s.ChainPage, tags=["chains"], responses=problems(*AUTH, 422))
async def list_chains(
    gw: Gw, principal: OperatorKey, limit: Limit = 50, cursor: Cursor = None
) -> JSONResponse:
    """Every chain, oldest first (operator key); `next` pages on."""
    async with gw.read() as session:
        return JSONResponse(await keys.list_chains(session, limit=limit, cursor=cursor))


@router.post(
    "/chains/{chain_id}/admin-key",
    status_code=201,
    response_model=s.AdminKeyOut,
    tags=["chains"],
    responses=problems(*AUTH, 404, 409, 422),
)
async def replace_admin_key(
    once: OperatorOnce,
    chain_id: UUID,
) -> JSONResponse:
    """A new admin key for a chain whose key was lost or leaked (operator key); every earlier
    admin key of the chain answers 401 from then on."""
    return await once.issuing_a_key(
        "admin_api_key",
        lambda session, issue: keys.replace_admin_key(session, chain_id, issue),
    )


@router.post(
    "/stores",
    status_code=201,
    response_model=s.StoreOut,
    tags=["chains"],
    responses=problems(*AUTH, 409, 422),
)
async def create_store(
    once: AdminOnce,
    body: s.StoreCreate,
) -> JSONResponse:
    return await once.run(
        lambda session: masterdata.register_store(session, once.principal, body),
    )


@router.get("/stores", response_model=s.StorePage, tags=["chains"], responses=problems(*AUTH, 422))
async def list_stores(
    gw: Gw, principal: AdminKey, limit: Limit = 50, cursor: Cursor = None
) -> JSONResponse:
    """The chain's stores by code, each with its terminals (`revoked_at` once deleted)."""
    async with gw.read() as session:
        return JSONResponse(await keys.list_stores(session, principal, limit=limit, cursor=cursor))


@router.post(
    "/stores/{store_id}/terminals",
    status_code=201,
    response_model=s.TerminalCreated,
    tags=["chains"],
    responses=problems(*AUTH, 404, 409, 422),
)
async def create_terminal(
    once: AdminOnce,
    store_id: UUID,
    body: s.TerminalCreate,
) -> JSONResponse:
    """Add a terminal to a store; the answer shows its key once."""
    return await once.issuing_a_key(
        "api_key",
        lambda session, issue: masterdata.register_terminal(
            session, once.principal, store_id, body, issue
        ),
    )


@router.post(
    "/terminals/{terminal_id}/key",
    status_code=201,
    response_model=s.TerminalCreated,
    tags=["chains"],
    responses=problems(*AUTH, 404, 409, 422),
)
async def replace_terminal_key(
    once: AdminOnce,
    terminal_id: UUID,
) -> JSONResponse:
    """The terminal's new key; its old key answers 401 from then on (404: another chain's
    terminal, or one that was deleted)."""
    return await once.issuing_a_key(
        "api_key",
        lambda session, issue: keys.replace_terminal_key(
            session, once.principal, terminal_id, issue
        ),
    )


@router.delete(
    "/terminals/{terminal_id}",
    response_model=s.TerminalRevoked,
    tags=["chains"],
    responses=problems(*AUTH, 404),
)
async def revoke_terminal(gw: Gw, principal: AdminKey, terminal_id: UUID) -> JSONResponse:
    """Revoke the terminal: its key answers 401 from then on; its past operations stay in
    every report. Asked again, the same answer."""
    async with gw.session() as session, session.begin():
        return to_response(await keys.revoke_terminal(session, principal, terminal_id))


@router.get("/settings", response_model=s.SettingsOut, tags=["chains"], responses=problems(*AUTH))
async def get_settings(gw: Gw, principal: AdminKey) -> JSONResponse:
    async with gw.read() as session:
        return JSONResponse(await masterdata.get_settings(session, principal))


@router.put(
    "/settings",
    response_model=s.SettingsOut,
    tags=["chains"],
    operation_id="updateSettings",
    responses=problems(*AUTH, 422),
)
async def put_settings(gw: Gw, principal: AdminKey, body: s.SettingsUpdate) -> JSONResponse:
    """Change any subset of the settings; they apply to every operation accepted after this."""
    async with gw.session() as session, session.begin():
        return JSONResponse(await masterdata.update_settings(session, principal, body))


# --------------------------------------------------------------------------- customers


@router.post(
    "/customers",
    status_code=201,
    response_model=s.CustomerOut,
    tags=["customers"],
    responses=problems(*AUTH, 409, 422),
)
async def create_customer(
    once: AdminOnce,
    body: s.CustomerCreate,
) -> JSONResponse:
    return await once.run(
        lambda session: masterdata.create_customer(session, once.principal, body),
    )


@router.get(
    "/customers",
    response_model=s.CustomerPage,
    tags=["customers"],
    responses=problems(*AUTH, 422, 503),
)
async def list_customers(
    gw: Gw,
    principal: BackOfficeKey,
    vip: bool | None = None,
    q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> JSONResponse:
    """Customers by name; `q` matches name, phone or card number; `next` pages on."""
    async with gw.read() as session:
        page = await masterdata.list_customers(
            session, gw.reporting_api, principal, vip=vip, q=q, limit=limit, cursor=cursor
        )
    return JSONResponse(page)


@router.get(
    "/customers/{customer_id}",
    response_model=s.CustomerOut,
    tags=["customers"],
    responses=problems(*AUTH, 404, 503),
)
async def get_customer(gw: Gw, principal: BackOfficeKey, customer_id: UUID) -> JSONResponse:
    customer = await masterdata.get_customer(gw.read, gw.reporting_api, principal, customer_id)
    return JSONResponse(customer)


@router.patch(
    "/customers/{customer_id}",
    response_model=s.CustomerOut,
    tags=["customers"],
    operation_id="updateCustomer",
    responses=problems(*AUTH, 404, 422, 503),
)
async def patch_customer(
    gw: Gw, principal: AdminKey, customer_id: UUID, body: s.CustomerPatch
) -> JSONResponse:
    async with gw.session() as session, session.begin():
        customer = await masterdata.patch_customer(
            session, gw.reporting_api, principal, customer_id, body
        )
    return JSONResponse(customer)


@router.post(
    "/customers/{customer_id}/cards",
    status_code=201,
    response_model=s.CardIssued,
    tags=["customers"],
    responses=problems(*AUTH, 404, 409, 422),
)
async def issue_card(
    once: AdminOnce,
    customer_id: UUID,
    body: s.CardIssue,
) -> JSONResponse:
    """Give the customer a new card; the previous one is blocked."""
    return await once.run(
        lambda session: masterdata.issue_card(session, once.principal, customer_id, body),
    )


CardPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/cards/{card_number}/block",
    response_model=s.CardBlockedOut,
    tags=["customers"],
    responses=problems(*AUTH, 404, 409),
)
async def block_card(
    once: AdminOnce,
    card_number: CardPath,
) -> JSONResponse:
    return await once.run(
        lambda session: masterdata.block_card(session, once.principal, card_number),
    )


@router.get(
    "/cards/{card_number}",
    response_model=s.CardLookup,
    tags=["till"],
    operation_id="getCard",
    responses=problems(401, 403, 404, 503),
)
async def lookup_card(gw: Gw, principal: ChainReader, card_number: CardPath) -> JSONResponse:
    """ "Calculate": balances and open sales of the card's customer (403 `card_blocked`)."""
    card = await masterdata.lookup_card(gw.read_one, gw.reporting_api, principal, card_number)
    return JSONResponse(card)


# --------------------------------------------------------------------------- till

_TILL_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": s.Pending, "description": "The outcome is not known yet: poll status_url"},
    **problems(*AUTH, 404, 409, 422, 429),
}


#: the endpoints of `_till_operation`, which `till_operations_first` moves to the head of the
#: routing table
_TILL_OPERATIONS: list[Callable[..., Any]] = []


_Body = TypeVar("_Body", bound=BaseModel)


@dataclass(frozen=True)
class TillCall:
    """What a till operation other than a sale is sent with: the terminal's key and the
    `Idempotency-Key`."""

    request: Request
    gw: Gateway
    principal: Principal
    idempotency_key: str

    async def submit(
        self,
        use_case: Callable[[Gateway, Principal, UUID, _Body, str, str], Awaitable[Answer]],
        target_id: UUID,
        body: _Body,
    ) -> JSONResponse:
        answer = await use_case(
            self.gw,
            self.principal,
            target_id,
            body,
            self.idempotency_key,
            await _hash(self.request),
        )
        return to_response(answer)


async def _till_call(
    request: Request, gw: Gw, principal: TerminalKey, idempotency_key: RequiredIdempotencyKey
) -> TillCall:
    return TillCall(request, gw, principal, idempotency_key)


Till = Annotated[TillCall, Depends(_till_call)]


def _till_operation(path: str, response_model: type[BaseModel]) -> Callable[[_Route], _Route]:
    """The route of an operation a terminal sends: `201` with its outcome, `202` while the
    outcome is pending, or a problem."""
    route = router.post(
        path,
        status_code=201,
        response_model=response_model,
        tags=["till"],
        responses=_TILL_RESPONSES,
    )

    def till_operation(endpoint: _Route) -> _Route:
        _TILL_OPERATIONS.append(endpoint)
        return route(endpoint)

    return till_operation


@_till_operation("/sales", s.SaleOutcome)
async def create_sale(
    request: Request,
    principal: TerminalKeyCheckedLater,
    idempotency_key: RequiredIdempotencyKey,
    body: s.SaleCreate,
) -> JSONResponse:
    """Record a sale: 201 with the outcome, 422 with the refusal, or 202 while pending."""
    gw = gateway(request)  # not a dependency (`Gw`): one fewer to solve per sale
    # a key from the cache of keys is checked by the sale's first statement from here on
    request.state.unchecked_key_hash = None
    hashed, sale_hash = request_and_body_hash(
        request.method, request.url.path, await _body_json(request)
    )
    try:
        answer = await operations.submit_sale(
            gw, principal, body, sale_hash, idempotency_key, hashed
        )
    except GatewayError as exc:
        if exc.code == "unauthorized" and principal.unchecked_key_hash is not None:
            # the key was revoked since this process cached it
            request.app.state.key_cache.forget(principal.unchecked_key_hash)
        raise
    return to_response(answer)


@router.get(
    "/sales/{sale_id}",
    response_model=s.SaleRead,
    tags=["till"],
    operation_id="getSale",
    responses=problems(*AUTH, 404),
)
async def read_sale(gw: Gw, principal: ChainReader, sale_id: UUID) -> JSONResponse:
    """The outcome with its lines, `pending`, or `refused` with the code (200 in each case)."""
    return JSONResponse(await operations.read_sale(gw, principal, sale_id))


@_till_operation("/customers/{customer_id}/payments", s.DebtPaymentOut)
async def take_money(till: Till, customer_id: UUID, body: s.DebtPaymentCreate) -> JSONResponse:
    """ "Take money" (an amount) or "Pay debt" (the whole debt)."""
    return await till.submit(operations.submit_debt_payment, customer_id, body)


@_till_operation("/customers/{customer_id}/advances", s.AdvanceOut)
async def pay_advance(till: Till, customer_id: UUID, body: s.AdvanceCreate) -> JSONResponse:
    return await till.submit(operations.submit_advance, customer_id, body)


@_till_operation("/customers/{customer_id}/refunds", s.RefundOut)
async def return_money(till: Till, customer_id: UUID, body: s.RefundCreate) -> JSONResponse:
    """ "Return money": pay advance back (needs the card)."""
    return await till.submit(operations.submit_refund, customer_id, body)


@_till_operation("/sales/{sale_id}/returns", s.ReturnOut)
async def return_goods(till: Till, sale_id: UUID, body: s.ReturnCreate) -> JSONResponse:
    return await till.submit(operations.submit_return, sale_id, body)


@router.get(
    "/operations/{kind}/{operation_id}",
    response_model=s.OperationStatus,
    tags=["till"],
    operation_id="getOperation",
    responses=problems(*AUTH, 404),
)
async def read_operation(
    gw: Gw,
    principal: ChainReader,
    kind: Literal[
        "debt_payment", "advance", "refund", "return", "revoke_discount", "bonus_cancel", "sale"
    ],
    operation_id: UUID,
) -> JSONResponse:
    """Where a `202` points: the operation's status and, once completed, its answer."""
    status = await operations.read_operation_status(gw, principal, kind, operation_id)
    return JSONResponse(status)


# --------------------------------------------------------------------------- back office


@router.post(
    "/payments/{payment_id}/bonus-type",
    response_model=s.BonusTypeOut,
    tags=["back office"],
    responses={**_TILL_RESPONSES, 503: problems(503)[503]},
)
async def set_bonus_type(
    request: Request,
    gw: Gw,
    principal: BackOfficeKey,
    payment_id: UUID,
    body: s.BonusTypeUpdate,
    idempotency_key: OptionalIdempotencyKey,
) -> JSONResponse:
    """Cancel one payment's accrual ("no bonuses"); asking again answers the same."""
    answer = await operations.cancel_payment_bonus(
        gw, principal, payment_id, idempotency_key, await _hash(request)
    )
    return to_response(answer)


@router.post(
    "/sales/{sale_id}/revoke-discount",
    response_model=s.RevokeDiscountOut,
    tags=["back office"],
    responses=_TILL_RESPONSES,
)
async def revoke_discount(
    request: Request,
    gw: Gw,
    principal: BackOfficeKey,
    sale_id: UUID,
    idempotency_key: OptionalIdempotencyKey,
) -> JSONResponse:
    """Revoke the discount of an overdue sale, once (409 `already_revoked`, 422 `not_overdue`).

    Customer service may do it only where the chain offers it (`overdue_discount=offer`)."""
    if principal.kind is KeyKind.CUSTOMER_SERVICE:
        assert principal.chain_id is not None
        async with gw.read() as session:
            chain = await load_chain(session, principal.chain_id)
        if chain.overdue_discount != "offer":
            raise GatewayError(
                "forbidden",
                "customer service may revoke a discount only where the chain offers it "
                "(overdue_discount=offer)",
            )
    answer = await operations.revoke_discount(
        gw, principal, sale_id, idempotency_key, await _hash(request)
    )
    return to_response(answer)


# --------------------------------------------------------------------------- proxies


def _proxied(upstream: Any) -> Response:
    if upstream.status_code == 404:
        raise not_found()
    if upstream.status_code >= 400:
        media = upstream.headers.get("content-type", PROBLEM_MEDIA_TYPE)
        return Response(upstream.content, status_code=upstream.status_code, media_type=media)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
    )


def _query(request: Request) -> httpx.QueryParams:
    # passed through unchanged: reporting and the notifier read the public parameters
    return httpx.QueryParams(list(request.query_params.multi_items()))


def _accept(request: Request) -> dict[str, str]:
    accept = request.headers.get("accept")
    return {"Accept": accept} if accept else {}


#: Report periods (and the statement's) lie within these days (api.md, Reports).
PERIOD_FIRST, PERIOD_LAST = date(2000, 1, 1), date(2099, 12, 31)


def check_period(from_: date | None, to: date | None) -> None:
    """Both ends between 2000-01-01 and 2099-12-31 and `from` <= `to`, else `422` naming the
    field: a period outside what a calendar in the chain's time zone can hold must not reach
    reporting (it answered 503)."""
    errors = [
        {"field": name, "message": f"must be between {PERIOD_FIRST} and {PERIOD_LAST}"}
        for name, day in (("from", from_), ("to", to))
        if day is not None and not PERIOD_FIRST <= day <= PERIOD_LAST
    ]
    if not errors and from_ is not None and to is not None and from_ > to:
        # the pair is wrong, not one end: both are named
        errors += [
            {"field": "from", "message": "must not be after to"},
            {"field": "to", "message": "must not be before from"},
        ]
    if errors:
        raise ValidationFailed(errors)


_REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "The report as JSON, or CSV with `Accept: text/csv`",
    },
    **problems(*AUTH, 422, 503),
}


def _report_route(report: str, summary: str, model: type[BaseModel]) -> None:
    async def report_endpoint(
        request: Request,
        gw: Gw,
        principal: BackOfficeKey,
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: date | None = None,
        store_id: UUID | None = None,
        vip_only: bool | None = None,
        sort: Literal["closing", "name"] | None = None,
        limit: Annotated[int | None, Query(ge=1, le=500)] = None,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> Response:
        assert principal.chain_id is not None
        check_period(from_, to)
        upstream = await gw.reporting_api.request(
            "GET",
            principal.chain_id,
            f"reports/{report}",
            params=_query(request),
            headers=_accept(request),
        )
        return _proxied(upstream)

    name = "".join(word.capitalize() for word in report.split("-"))
    router.add_api_route(
        f"/reports/{report}",
        report_endpoint,
        methods=["GET"],
        tags=["reports"],
        summary=summary,
        response_model=model,
        responses=_REPORT_RESPONSES,
        name=f"report_{report.replace('-', '_')}",
        operation_id=f"get{name}Report",
    )


_report_route(
    "payment-balance", "Opening, goods, payments and closing per customer", s.PaymentBalanceReport
)
_report_route("unpaid-goods", "Every unpaid item of VIP customers", s.UnpaidGoodsReport)
_report_route("aging", "Debt not yet due and 1-30, 31-60, 61-90, 90+ days past due", s.AgingReport)
_report_route(
    "bonus-statistics", "Bonus movements per period, store and customer", s.BonusStatistics
)


@router.get(
    "/customers/{customer_id}/statement",
    response_model=s.Statement,
    tags=["reports"],
    operation_id="getStatement",
    responses={**_REPORT_RESPONSES, **problems(404)},
)
async def statement(
    request: Request,
    gw: Gw,
    principal: BackOfficeKey,
    customer_id: UUID,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    limit: Annotated[int | None, Query(ge=1, le=500)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Every movement of the customer in time order, with running balances."""
    assert principal.chain_id is not None
    check_period(from_, to)
    async with gw.read() as session:
        await load_customer(session, principal.chain_id, customer_id)
    upstream = await gw.reporting_api.request(
        "GET",
        principal.chain_id,
        f"customers/{customer_id}/statement",
        params=_query(request),
        headers=_accept(request),
    )
    return _proxied(upstream)


@router.get(
    "/tasks", response_model=s.TaskPage, tags=["tasks"], responses=problems(*AUTH, 422, 503)
)
async def list_tasks(
    request: Request,
    gw: Gw,
    principal: BackOfficeKey,
    status: Literal["open", "done"] | None = None,
    limit: Annotated[int | None, Query(ge=1, le=500)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Reminder tasks for customer service (from the notifier)."""
    assert principal.chain_id is not None
    upstream = await gw.notifier_api.request(
        "GET", principal.chain_id, "tasks", params=_query(request)
    )
    return _proxied(upstream)


@router.get(
    "/tasks/{task_id}",
    response_model=s.TaskOut,
    tags=["tasks"],
    responses=problems(*AUTH, 404, 503),
)
async def get_task(gw: Gw, principal: BackOfficeKey, task_id: UUID) -> Response:
    """One reminder task, open or done, as `GET /v1/tasks` lists it (another chain's task is
    `404`). The chain admin key, a manager and customer service may read it; the link in the
    notifier's reminder email opens the back office's page of it."""
    assert principal.chain_id is not None
    upstream = await gw.notifier_api.request("GET", principal.chain_id, f"tasks/{task_id}")
    return _proxied(upstream)


@router.post(
    "/tasks/{task_id}/complete",
    response_model=s.TaskOut,
    tags=["tasks"],
    responses=problems(*AUTH, 404, 422, 503),
)
async def complete_task(
    gw: Gw,
    principal: BackOfficeKey,
    task_id: UUID,
    body: s.TaskComplete,
    idempotency_key: OptionalIdempotencyKey,
) -> Response:
    """Record the outcome of the call; the task closes as `completed`, with `completed_by`
    the staff user whose token did it (null for the chain admin key)."""
    assert principal.chain_id is not None
    completed_by = None
    if principal.user_id is not None:
        completed_by = {"user_id": str(principal.user_id), "name": principal.user_name}
    upstream = await gw.notifier_api.request(
        "POST",
        principal.chain_id,
        f"tasks/{task_id}/complete",
        json={**body.model_dump(mode="json"), "completed_by": completed_by},
    )
    return _proxied(upstream)


@router.put(
    "/webhook", response_model=s.WebhookOut, tags=["tasks"], responses=problems(*AUTH, 422, 503)
)
async def set_webhook(gw: Gw, principal: AdminKey, body: s.WebhookSet) -> Response:
    """The chain's webhook for new reminder tasks (kept by the notifier)."""
    assert principal.chain_id is not None
    upstream = await gw.notifier_api.request(
        "PUT", principal.chain_id, "webhook", json=body.model_dump(mode="json")
    )
    return _proxied(upstream)


@router.delete(
    "/webhook",
    tags=["tasks"],
    status_code=204,
    responses={
        204: {"description": "The chain's webhook was removed"},
        **problems(*AUTH, 404, 503),
    },
)
async def delete_webhook(gw: Gw, principal: AdminKey) -> Response:
    """Remove the chain's webhook (the notifier's answer is passed through: 204, or 404)."""
    assert principal.chain_id is not None
    upstream = await gw.notifier_api.request("DELETE", principal.chain_id, "webhook")
    return _proxied(upstream)


#: The paths in the order their routes are declared above: the order the OpenAPI document
#: lists them in (`openapi.build_document`), whatever the order of the routing table.
DECLARED_PATHS: tuple[str, ...] = tuple(dict.fromkeys(route.path for route in router.routes))  # type: ignore[attr-defined]


def till_operations_first() -> None:
    """Move the till's operations (`_till_operation`: a sale first) to the head of the routing
    table, in their order. A request is matched against the routes in the table's order (by
    FastAPI twice per request, a regular expression each), and these are the requests of
    every sale and payment at a till; no other route has their paths, so which route answers
    any request, and how, does not change."""
    first = [
        route for route in router.routes if getattr(route, "endpoint", None) in _TILL_OPERATIONS
    ]
    router.routes[:] = first + [route for route in router.routes if route not in first]


till_operations_first()

__all__ = ["DECLARED_PATHS", "GatewayError", "router"]
