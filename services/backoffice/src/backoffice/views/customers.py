"""Customers: the searchable list, and one customer's page (balances, open sales, statement,
cards, cancelling a payment's bonus accrual)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from backoffice.gateway import ApiProblem
from backoffice.views.downloads import csv_download
from backoffice.web import ManagerPage, Page, PageContext, field, is_htmx, render, uuid_field

router = APIRouter()

#: the statement opens on the last 90 days (the till accepts operations up to 90 days late)
STATEMENT_DAYS = 90


@router.get("/customers")
async def customer_list(page: Page, q: str = "", vip: str = "", cursor: str = "") -> Response:
    settings = page.request.app.state.settings
    vip_param = vip if vip in ("true", "false") else None
    answer = await page.api.get(
        "/v1/customers",
        q=q.strip() or None,
        vip=vip_param,
        cursor=cursor or None,
        limit=settings.page_size,
    )
    values = {
        "customers": answer.get("items", []),
        "next_cursor": answer.get("next"),
        "params": {"q": q, "vip": vip_param or "", "cursor": cursor},
        "q": q,
        "vip": vip_param or "",
    }
    if is_htmx(page.request) and page.request.headers.get("hx-target") == "results":
        return render(page.request, "customers/_results.html", **values)
    return render(page.request, "customers/list.html", **values)


def today_in(page: PageContext) -> date:
    """Today in the chain's time zone (UTC while the API has not told us the zone)."""
    zone = page.fmt.profile.zone
    return datetime.now(zone).date() if zone is not None else datetime.utcnow().date()


def _period(page: PageContext, from_: str, to: str, days: int) -> tuple[str, str]:
    today = today_in(page)
    return (from_ or (today - timedelta(days=days)).isoformat(), to or today.isoformat())


async def _open_sales(page: PageContext, customer: dict[str, Any]) -> tuple[list[Any], str]:
    """The open sales of the customer's card ("Calculate"), and why there are none if so."""
    card = customer.get("card_number")
    if not card:
        return [], "no_card"
    try:
        lookup = await page.api.get(f"/v1/cards/{quote(card, safe='')}")
    except ApiProblem as exc:
        if exc.code == "card_blocked":
            return [], "card_blocked"
        if exc.status in (403, 404):
            return [], "unavailable"
        raise
    return list(lookup.get("open_sales") or []), ""


async def customer_context(
    page: PageContext, customer_id: UUID, from_: str, to: str, cursor: str
) -> dict[str, Any]:
    settings = page.request.app.state.settings
    period_from, period_to = _period(page, from_, to, STATEMENT_DAYS)
    customer = await page.api.get(f"/v1/customers/{customer_id}")
    (open_sales, no_sales_reason), (statement, errors) = await asyncio.gather(
        _open_sales(page, customer),
        _statement(page, customer_id, period_from, period_to, settings.page_size, cursor),
    )
    return {
        "customer": customer,
        "open_sales": open_sales,
        "no_sales_reason": no_sales_reason,
        "statement": statement,
        "next_cursor": statement.get("next"),
        "params": {"from": period_from, "to": period_to, "cursor": cursor},
        "errors": errors,
        "entered": {},
    }


async def _statement(
    page: PageContext,
    customer_id: UUID,
    period_from: str,
    period_to: str,
    limit: int,
    cursor: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The statement page, or an empty one with the API's complaint about the period (shown
    next to the date pickers)."""
    try:
        body = await page.api.get(
            f"/v1/customers/{customer_id}/statement",
            **{"from": period_from},
            to=period_to,
            limit=limit,
            cursor=cursor or None,
        )
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return {"opening": {}, "entries": [], "closing": {}}, period_errors(exc)
    return dict(body), {}


def period_errors(exc: ApiProblem) -> dict[str, str]:
    """A 422 about report parameters as field -> message (the period's `from` when the API
    names no field)."""
    errors = {k.removeprefix("query."): v for k, v in exc.errors.items()}
    return errors or {"from": exc.detail or exc.title}


@router.get("/customers/{customer_id}")
async def customer_page(page: Page, customer_id: UUID, cursor: str = "") -> Response:
    query = page.request.query_params
    context = await customer_context(
        page, customer_id, query.get("from", ""), query.get("to", ""), cursor
    )
    return render(page.request, "customers/one.html", **context)


@router.get("/customers/{customer_id}/statement.csv")
async def statement_csv(page: Page, customer_id: UUID) -> Response:
    query = page.request.query_params
    period_from, period_to = _period(
        page, query.get("from", ""), query.get("to", ""), STATEMENT_DAYS
    )
    return await csv_download(
        page,
        f"/v1/customers/{customer_id}/statement",
        f"statement-{str(customer_id)[:8]}",
        {"from": period_from, "to": period_to},
    )


async def _again(
    page: PageContext, customer_id: UUID, exc: ApiProblem, entered: dict[str, str], general: str
) -> Response:
    context = await customer_context(page, customer_id, "", "", "")
    context["errors"] = dict(exc.errors) or {general: exc.detail or exc.title}
    context["entered"] = entered
    return render(page.request, "customers/one.html", status_code=exc.status, **context)


@router.post("/customers/{customer_id}/cards")
async def issue_card(page: ManagerPage, customer_id: UUID) -> Response:
    form = await page.request.form()
    card = field(form, "card_number")
    problem = await page.submit(
        form, "POST", f"/v1/customers/{customer_id}/cards", {"card_number": card}
    )
    if isinstance(problem, ApiProblem):
        return await _again(page, customer_id, problem, {"card_number": card}, "card_number")
    return RedirectResponse(f"/customers/{customer_id}?msg=card_issued", status_code=303)


@router.post("/customers/{customer_id}/block-card")
async def block_card(page: ManagerPage, customer_id: UUID) -> Response:
    form = await page.request.form()
    card = field(form, "card_number")
    problem = await page.submit(form, "POST", f"/v1/cards/{quote(card, safe='')}/block")
    if isinstance(problem, ApiProblem):
        return await _again(page, customer_id, problem, {}, "block")
    return RedirectResponse(f"/customers/{customer_id}?msg=card_blocked", status_code=303)


@router.post("/customers/{customer_id}/no-bonus")
async def cancel_accrual(page: Page, customer_id: UUID) -> Response:
    """A payment's bonus type set to "no bonuses": its accrual is cancelled (once)."""
    form = await page.request.form()
    payment_id = uuid_field(form, "payment_id")
    problem = await page.submit(
        form, "POST", f"/v1/payments/{payment_id}/bonus-type", {"bonus_type": "none"}
    )
    if isinstance(problem, ApiProblem):
        return await _again(page, customer_id, problem, {}, "statement")
    back = field(form, "back")
    own = f"/customers/{customer_id}"
    target = back if back == own or back.startswith(own + "?") else own
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}msg=accrual_cancelled", status_code=303)
