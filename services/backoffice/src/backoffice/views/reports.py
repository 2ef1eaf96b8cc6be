"""The four reports: Payment-Balance, Unpaid goods, Aging, Bonus statistics.

Each page has the filters the API takes (period, VIP only, store, sort where the API sorts),
one page of rows at a time (the API's cursor), the totals, a chart where it says more than the
table, and a CSV download of the whole report (the API's own `text/csv`).
"""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from backoffice.charts import Bar, bar_chart
from backoffice.gateway import ApiProblem, GatewayUnavailable
from backoffice.i18n import N_
from backoffice.views.customers import period_errors, today_in
from backoffice.views.downloads import csv_download
from backoffice.web import Page, PageContext, render

router = APIRouter()

#: customers in the Payment-Balance chart (the most owing ones of the page)
CHART_ROWS = 10


def _filters(page: PageContext, *, period: bool, sort: bool) -> dict[str, str]:
    """The report's filters from the query string, with the defaults filled in: the current
    month, every customer (not only VIP), all stores, most owing first."""
    query = page.request.query_params
    values: dict[str, str] = {
        "vip_only": "true" if query.get("vip_only") == "true" else "",
        "store_id": query.get("store_id", ""),
    }
    if period:
        today = today_in(page)
        values["from"] = query.get("from") or today.replace(day=1).isoformat()
        values["to"] = query.get("to") or today.isoformat()
    if sort:
        values["sort"] = "name" if query.get("sort") == "name" else "closing"
    return values


async def stores_of(page: PageContext) -> list[dict[str, Any]]:
    """The chain's stores for the store filter. Only managers may list stores; for anyone
    else (or an API without the list) the filter offers all stores only."""
    if not page.user.is_manager:
        return []
    try:
        answer = await page.api.get("/v1/stores", limit=500)
    except (ApiProblem, GatewayUnavailable):
        return []
    return list(answer.get("items", []))


async def _report(
    page: PageContext, name: str, filters: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    settings = page.request.app.state.settings
    cursor = page.request.query_params.get("cursor") or None
    try:
        body = await page.api.get(
            f"/v1/reports/{name}", **filters, limit=settings.page_size, cursor=cursor
        )
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return {}, period_errors(exc)
    return dict(body), {}


#: each report's filters besides VIP only and store: (a period, a sort), for its page and its CSV
_FILTERS = {
    "payment-balance": (True, True),
    "unpaid-goods": (False, False),
    "aging": (False, False),
    "bonus-statistics": (True, False),
}


async def _page(page: PageContext, name: str, *, chart: Any = None) -> Response:
    """The report's page (template `reports/<name>.html`): its filters, one page of rows, the
    chart `chart` draws of them."""
    period, sort = _FILTERS[name]
    filters = _filters(page, period=period, sort=sort)
    (body, errors), stores = await asyncio.gather(_report(page, name, filters), stores_of(page))
    cursor = page.request.query_params.get("cursor", "")
    return render(
        page.request,
        f"reports/{name.replace('-', '_')}.html",
        report=body,
        errors=errors,
        filters=filters,
        stores=stores,
        store_names={s.get("store_id"): s.get("name") for s in stores},
        params={**filters, "cursor": cursor},
        next_cursor=body.get("next"),
        chart=chart(page, body) if chart and body else "",
        report_name=name,
    )


def _neg(value: Decimal) -> str:
    return "neg" if value < 0 else ""


def _payment_balance_chart(page: PageContext, body: dict[str, Any]) -> Any:
    rows = sorted(body.get("rows", []), key=lambda r: Decimal(r["closing"]))
    owing = [r for r in rows if Decimal(r["closing"]) < 0][:CHART_ROWS]
    bars = [
        Bar(r["name"], Decimal(r["closing"]), page.fmt.money(r["closing"]), "neg") for r in owing
    ]
    return bar_chart(bars, title=page.gettext(N_("Most owing customers on this page")))


def _aging_chart(page: PageContext, body: dict[str, Any]) -> Any:
    totals = body.get("totals") or {}
    labels = [
        ("current", N_("Not yet due")),
        ("d1_30", N_("1-30 days")),
        ("d31_60", N_("31-60 days")),
        ("d61_90", N_("61-90 days")),
        ("d90_plus", N_("Over 90 days")),
    ]
    bars = [
        Bar(
            page.gettext(label),
            Decimal(totals.get(key) or 0),
            page.fmt.money(totals.get(key) or "0"),
            "" if key == "current" else "neg",
        )
        for key, label in labels
    ]
    return bar_chart(bars, title=page.gettext(N_("Debt by days past due (whole chain)")))


MOVEMENTS = (
    ("accrued", N_("Accrued")),
    ("spent", N_("Spent")),
    ("cancelled", N_("Cancelled")),
    ("reversed", N_("Reversed")),
    ("restored", N_("Restored")),
    ("expired", N_("Expired")),
)


def _bonus_chart(page: PageContext, body: dict[str, Any]) -> Any:
    bars = [
        Bar(
            page.gettext(label),
            Decimal(body.get(key) or 0),
            page.fmt.money(body.get(key)),
            "" if key in ("accrued", "restored") else "neg",
        )
        for key, label in MOVEMENTS
    ]
    return bar_chart(bars, title=page.gettext(N_("Bonus movements in the period")))


@router.get("/reports/payment-balance")
async def payment_balance(page: Page) -> Response:
    return await _page(page, "payment-balance", chart=_payment_balance_chart)


@router.get("/reports/unpaid-goods")
async def unpaid_goods(page: Page) -> Response:
    return await _page(page, "unpaid-goods")


@router.get("/reports/aging")
async def aging(page: Page) -> Response:
    return await _page(page, "aging", chart=_aging_chart)


@router.get("/reports/bonus-statistics")
async def bonus_statistics(page: Page) -> Response:
    return await _page(page, "bonus-statistics", chart=_bonus_chart)


@router.get("/reports/{name}.csv")
async def report_csv(page: Page, name: str) -> Response:
    if name not in _FILTERS:
        raise ApiProblem(404, "not_found")
    period, sort = _FILTERS[name]
    filters = _filters(page, period=period, sort=sort)
    stamp = filters.get("to") or date.today().isoformat()
    return await csv_download(page, f"/v1/reports/{name}", f"{name}-{stamp}", filters)
