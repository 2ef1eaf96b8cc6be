"""The internal read API the gateway calls (loopback only, see docs/architecture.md).

Paths are prefixed `/internal/v1/chains/{chain_id}`; answers are the public JSON of api.md,
or CSV with `Accept: text/csv`. Objects of another chain answer `404 {"code": "not_found"}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.domain.csv_rows import to_csv
from reporting.domain.model import Period, money_str
from reporting.service_layer import reports
from reporting.service_layer.reports import CSV_HEADERS, Filters, NotFound
from servicekit.db import SessionFactory
from servicekit.paging import BadCursor, page_by_offset

PREFIX = "/internal/v1/chains/{chain_id}"
MAX_LIMIT = 500


def _session_factory(request: Request) -> SessionFactory:
    factory: SessionFactory = request.app.state.runtime.session_factory
    return factory


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # a read-only snapshot: every query of one report sees the same state
    async with _session_factory(request)() as session, session.begin():
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: list[UUID]


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"status": status, "title": code.replace("_", " "), "detail": detail, "code": code},
        status_code=status,
        media_type="application/problem+json",
    )


def _wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def _csv(rows: Sequence[Mapping[str, Any]], header: Sequence[str], name: str) -> Response:
    return Response(
        to_csv(rows, header),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


FromQ = Annotated[date | None, Query(alias="from")]
ToQ = Annotated[date | None, Query()]
StoreQ = Annotated[UUID | None, Query()]
VipQ = Annotated[bool, Query()]
LimitQ = Annotated[int | None, Query(ge=1, le=MAX_LIMIT)]
CursorQ = Annotated[str | None, Query()]


def _store_filters(store_id: StoreQ = None, vip_only: VipQ = False) -> Filters:
    """The filters of a report over what is open now: `store_id` and `vip_only`."""
    return Filters(Period(None, None), store_id, vip_only)


def _period_filters(
    from_: FromQ = None, to: ToQ = None, store_id: StoreQ = None, vip_only: VipQ = False
) -> Filters:
    """The filters of a report over a period: `from`, `to`, `store_id` and `vip_only`."""
    return Filters(Period(from_, to), store_id, vip_only)


StoreFilters = Annotated[Filters, Depends(_store_filters)]
PeriodFilters = Annotated[Filters, Depends(_period_filters)]


def _page_answer(
    request: Request,
    rows: Sequence[Mapping[str, Any]],
    report: str,
    *,
    limit: int | None,
    cursor: str | None,
    rows_key: str = "rows",
    **rest: Any,
) -> Response:
    """A list report's answer: one page of `rows` (all of them without a limit) as JSON under
    `rows_key` with `rest` and the next cursor, or the page as CSV."""
    try:
        page, nxt = page_by_offset(rows, limit=limit, cursor=cursor)
    except BadCursor:
        return _problem(422, "validation_error", "invalid cursor")
    if _wants_csv(request):
        return _csv(page, CSV_HEADERS[report], report)
    return JSONResponse({rows_key: list(page), **rest, "next": nxt})


#: a whole list report: its rows and what the answer holds besides them
Whole = tuple[Sequence[Mapping[str, Any]], dict[str, Any]]


async def _unpaid_goods_whole(session: AsyncSession, chain_id: UUID, filters: Filters) -> Whole:
    return await reports.unpaid_goods(session, chain_id, filters), {}


async def _aging_whole(session: AsyncSession, chain_id: UUID, filters: Filters) -> Whole:
    rows, totals = await reports.aging(session, chain_id, filters)
    return rows, {"totals": totals}


async def _bonus_statistics_whole(session: AsyncSession, chain_id: UUID, filters: Filters) -> Whole:
    body = await reports.bonus_statistics(session, chain_id, filters)
    return body.pop("by_customer"), body


#: each list report's page (`reports.*_page`), whole report, and the key of its rows
_LIST_REPORTS: dict[str, tuple[Callable[..., Awaitable[reports.ReportPage]], Any, str]] = {
    "unpaid-goods": (reports.unpaid_goods_page, _unpaid_goods_whole, "rows"),
    "aging": (reports.aging_page, _aging_whole, "rows"),
    "bonus-statistics": (reports.bonus_statistics_page, _bonus_statistics_whole, "by_customer"),
}


async def _list_report(
    request: Request,
    report: str,
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    limit: int | None,
    cursor: str | None,
) -> Response:
    """A list report's answer: with a `limit`, the page its SQL cut (`reports.*_page`) with
    the whole report's totals; without, every row; as JSON or CSV like `_page_answer`."""
    page, whole, rows_key = _LIST_REPORTS[report]
    if limit is None:
        rows, rest = await whole(session, chain_id, filters)
        return _page_answer(
            request, rows, report, limit=limit, cursor=cursor, rows_key=rows_key, **rest
        )
    try:
        found = await page(session, chain_id, filters, limit=limit, cursor=cursor)
    except BadCursor:
        return _problem(422, "validation_error", "invalid cursor")
    if _wants_csv(request):
        return _csv(found.rows, CSV_HEADERS[report], report)
    rest = found.rest or ({} if found.totals is None else {"totals": found.totals})
    return JSONResponse({rows_key: found.rows, **rest, "next": found.next})


async def _payment_balance_whole(
    request: Request,
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    sort: str,
    cursor: str | None,
) -> Response:
    """The unpaged report, its rows rendered by PostgreSQL (see `payment_balance_rendered`)."""
    fmt = "csv" if _wants_csv(request) else "json"
    try:
        found = await reports.payment_balance_rendered(
            session, chain_id, filters, sort=sort, fmt=fmt, cursor=cursor
        )
    except BadCursor:
        return _problem(422, "validation_error", "invalid cursor")
    if fmt == "csv":
        return Response(
            found.body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="payment-balance.csv"'},
        )
    mu = found.info.minor_units
    totals = json.dumps(
        {k: money_str(v, mu) for k, v in found.totals.items()}, separators=(",", ":")
    )
    return Response(
        '{"rows":[' + found.body + '],"totals":' + totals + "}", media_type="application/json"
    )


def router() -> APIRouter:
    """The routes under `PREFIX`, by area (in this order: the paths of the OpenAPI)."""
    api = APIRouter(prefix=PREFIX, tags=["internal"])
    _customer_routes(api)
    _payment_balance_route(api)
    _list_report_routes(api)
    _statement_route(api)
    return api


def _customer_routes(api: APIRouter) -> None:
    """A customer's balances (one, or a batch, as tills show them) and open sales."""

    @api.get("/customers/{customer_id}/balances")
    async def customer_balances(chain_id: UUID, customer_id: UUID, request: Request) -> Response:
        # one statement: its own snapshot, no REPEATABLE READ transaction to set up
        async with _session_factory(request)() as session:
            try:
                found = await reports.customer_balances(session, chain_id, customer_id)
            except NotFound:
                return _problem(404, "not_found", "no such customer")
        return JSONResponse(found)

    @api.post("/balances:batch")
    async def balances_batch(chain_id: UUID, body: BatchRequest, session: Session) -> Response:
        found = await reports.balances_of(session, chain_id, body.customer_ids, strict=False)
        return JSONResponse({"items": {str(k): v for k, v in found.items()}})

    @api.get("/customers/{customer_id}/open-sales")
    async def customer_open_sales(
        chain_id: UUID,
        customer_id: UUID,
        session: Session,
        mode: Literal["balance", "per_sale", "per_item"] | None = None,
    ) -> Response:
        try:
            body = await reports.open_sales(session, chain_id, customer_id, mode)
        except NotFound:
            return _problem(404, "not_found", "no such customer")
        return JSONResponse(body)


def _payment_balance_route(api: APIRouter) -> None:
    """Payment-Balance: a page cut by its SQL, or the whole report rendered by PostgreSQL."""

    @api.get("/reports/payment-balance")
    async def payment_balance(
        request: Request,
        chain_id: UUID,
        session: Session,
        filters: PeriodFilters,
        sort: Literal["closing", "name"] = "closing",
        limit: LimitQ = None,
        cursor: CursorQ = None,
    ) -> Response:
        if limit is None:
            return await _payment_balance_whole(request, session, chain_id, filters, sort, cursor)
        try:
            result = await reports.payment_balance_page(
                session, chain_id, filters, sort=sort, limit=limit, cursor=cursor
            )
        except BadCursor:
            return _problem(422, "validation_error", "invalid cursor")
        info, totals, nxt = result.info, result.totals, result.next
        out = [reports.payment_balance_json(r, info.minor_units) for r in result.rows]
        if _wants_csv(request):
            return _csv(out, CSV_HEADERS["payment-balance"], "payment-balance")
        mu = info.minor_units
        return JSONResponse(
            {
                "rows": out,
                "totals": {k: money_str(v, mu) for k, v in totals.items()},
                "next": nxt,
            }
        )


def _list_report_routes(api: APIRouter) -> None:
    """Unpaid goods, Aging and Bonus statistics: `_list_report` by the report's name."""

    @api.get("/reports/unpaid-goods")
    async def unpaid_goods(
        request: Request,
        chain_id: UUID,
        session: Session,
        filters: StoreFilters,
        limit: LimitQ = None,
        cursor: CursorQ = None,
    ) -> Response:
        return await _list_report(
            request, "unpaid-goods", session, chain_id, filters, limit, cursor
        )

    @api.get("/reports/aging")
    async def aging(
        request: Request,
        chain_id: UUID,
        session: Session,
        filters: StoreFilters,
        limit: LimitQ = None,
        cursor: CursorQ = None,
    ) -> Response:
        return await _list_report(request, "aging", session, chain_id, filters, limit, cursor)

    @api.get("/reports/bonus-statistics")
    async def bonus_statistics(
        request: Request,
        chain_id: UUID,
        session: Session,
        filters: PeriodFilters,
        limit: LimitQ = None,
        cursor: CursorQ = None,
    ) -> Response:
        return await _list_report(
            request, "bonus-statistics", session, chain_id, filters, limit, cursor
        )


def _statement_route(api: APIRouter) -> None:
    """A customer's statement over a period, paged or whole."""

    @api.get("/customers/{customer_id}/statement")
    async def customer_statement(
        request: Request,
        chain_id: UUID,
        customer_id: UUID,
        session: Session,
        from_: FromQ = None,
        to: ToQ = None,
        limit: LimitQ = None,
        cursor: CursorQ = None,
    ) -> Response:
        try:
            body, entries = await reports.statement(
                session, chain_id, customer_id, Period(from_, to), limit=limit, cursor=cursor
            )
        except NotFound:
            return _problem(404, "not_found", "no such customer")
        except BadCursor:
            return _problem(422, "validation_error", "invalid cursor")
        if _wants_csv(request):
            return _csv(entries, CSV_HEADERS["statement"], "statement")
        return JSONResponse(body)
