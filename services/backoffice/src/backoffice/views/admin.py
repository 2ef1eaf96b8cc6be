"""Managers' pages: the chain's settings, stores and terminals (keys), and staff users.

Customer service never sees these: the navigation hides them and every route here needs a
manager (`ManagerPage`), whatever the API would answer. A terminal's new key is shown once,
in the answer to the POST that made it, and never again (the page is not cached either).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from backoffice.gateway import ApiProblem
from backoffice.i18n import N_
from backoffice.web import ManagerPage, PageContext, field, form_key, render

router = APIRouter()

CREDIT_MODES = ("balance", "per_sale", "per_item")
CREDIT_MODE_LABELS = {
    "balance": N_("Balance between goods and money"),
    "per_sale": N_("Payment tied to each sale"),
    "per_item": N_("Payment per item of the receipt"),
}
DISCOUNT_POLICIES = ("keep", "offer", "revoke")
DISCOUNT_LABELS = {
    "keep": N_("Keep the discount"),
    "offer": N_("Offer to revoke it (customer service decides)"),
    "revoke": N_("Revoke it automatically"),
}
ROLES = ("customer_service", "manager")
ROLE_LABELS = {"customer_service": N_("Customer service"), "manager": N_("Manager")}
_INTEGERS = ("max_payment_delay_days", "reminder_repeat_days", "bonus_expiry_days")


# --------------------------------------------------------------------------- settings


def _settings_page(
    page: PageContext, values: dict[str, Any], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        page.request,
        "admin/settings.html",
        status_code=status_code,
        values=values,
        errors=errors,
        credit_modes=CREDIT_MODES,
        credit_mode_labels=CREDIT_MODE_LABELS,
        discount_policies=DISCOUNT_POLICIES,
        discount_labels=DISCOUNT_LABELS,
    )


@router.get("/settings")
async def settings_form(page: ManagerPage) -> Response:
    values = await page.api.get("/v1/settings")
    return _settings_page(page, values, {})


def settings_body(form: FormData, current: dict[str, Any]) -> dict[str, Any]:
    """The PUT body from the form: every setting the page shows, typed as the API wants
    (integers as JSON integers where they are numbers, money-like rates as strings, an
    empty expiry as null = bonuses never expire). What is not a number is sent as it is, so
    the API's 422 names the field."""
    body: dict[str, Any] = {
        "credit_mode": field(form, "credit_mode"),
        "overdue_discount": field(form, "overdue_discount"),
        "block_credit_when_overdue": form.get("block_credit_when_overdue") == "true",
        "bonus_rate_percent": field(form, "bonus_rate_percent"),
    }
    for name in _INTEGERS:
        raw = field(form, name)
        if name == "bonus_expiry_days" and raw == "":
            body[name] = None
            continue
        body[name] = int(raw) if raw.isascii() and raw.isdigit() else raw
    if "reminder_email" in current:
        # a setting of the chain (the notifier's email digest), when the gateway has it
        body["reminder_email"] = field(form, "reminder_email") or None
    return body


@router.post("/settings")
async def save_settings(page: ManagerPage) -> Response:
    form = await page.request.form()
    current = await page.api.get("/v1/settings")
    body = settings_body(form, current)
    try:
        await page.api.send("PUT", "/v1/settings", body)
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return _settings_page(
            page, {**current, **body}, dict(exc.errors) or {"credit_mode": exc.detail}, 422
        )
    return RedirectResponse("/settings?msg=saved", status_code=303)


# --------------------------------------------------------------------------- stores


async def _list_page(
    page: PageContext,
    collection: str,
    template: str,
    *,
    errors: dict[str, str] | None = None,
    entered: dict[str, str] | None = None,
    status_code: int = 200,
    **values: Any,
) -> Response:
    """One page of a gateway collection (`/v1/<collection>`, at the query's cursor) with the
    form that adds to it, its errors and what was entered."""
    settings = page.request.app.state.settings
    cursor = page.request.query_params.get("cursor", "")
    answer = await page.api.get(
        f"/v1/{collection}", limit=settings.page_size, cursor=cursor or None
    )
    return render(
        page.request,
        template,
        status_code=status_code,
        next_cursor=answer.get("next"),
        params={"cursor": cursor},
        errors=errors or {},
        entered=entered or {},
        **{collection: answer.get("items", [])},
        **values,
    )


async def _stores_page(page: PageContext, **form: Any) -> Response:
    """The stores and their terminals; `form`: what `_list_page` shows of a refused form."""
    return await _list_page(page, "stores", "admin/stores.html", **form)


@router.get("/stores")
async def stores(page: ManagerPage) -> Response:
    return await _stores_page(page)


@router.post("/stores")
async def create_store(page: ManagerPage) -> Response:
    form = await page.request.form()
    body = {"code": field(form, "code"), "name": field(form, "name")}
    problem = await page.submit(form, "POST", "/v1/stores", body)
    if isinstance(problem, ApiProblem):
        errors = dict(problem.errors) or {"code": problem.detail or problem.title}
        return await _stores_page(page, errors=errors, entered=body, status_code=problem.status)
    return RedirectResponse("/stores?msg=store_created", status_code=303)


@router.post("/stores/{store_id}/terminals")
async def create_terminal(page: ManagerPage, store_id: UUID) -> Response:
    form = await page.request.form()
    name = field(form, "name")
    created = await page.submit(form, "POST", f"/v1/stores/{store_id}/terminals", {"name": name})
    if isinstance(created, ApiProblem):
        errors = {f"terminal-{store_id}": created.errors.get("name") or created.detail}
        return await _stores_page(page, errors=errors, status_code=created.status)
    return _key_once(page, created, name)


@router.post("/terminals/{terminal_id}/key")
async def replace_key(page: ManagerPage, terminal_id: UUID) -> Response:
    form = await page.request.form()
    created = await page.api.send(
        "POST", f"/v1/terminals/{terminal_id}/key", idempotency_key=form_key(form)
    )
    return _key_once(page, created, field(form, "name"))


def _key_once(page: PageContext, created: dict[str, Any], name: str) -> Response:
    """The terminal's key, shown in this answer only (it is stored nowhere here)."""
    return render(
        page.request,
        "admin/new_key.html",
        terminal_id=created.get("terminal_id"),
        terminal_name=name,
        api_key=created.get("api_key"),
    )


@router.post("/terminals/{terminal_id}/revoke")
async def revoke_terminal(page: ManagerPage, terminal_id: UUID) -> Response:
    await page.api.send("DELETE", f"/v1/terminals/{terminal_id}")
    return RedirectResponse("/stores?msg=terminal_revoked", status_code=303)


# --------------------------------------------------------------------------- users


async def _users_page(page: PageContext, **form: Any) -> Response:
    """The chain's staff; `form`: what `_list_page` shows of a refused form."""
    return await _list_page(
        page, "users", "admin/users.html", roles=ROLES, role_labels=ROLE_LABELS, **form
    )


@router.get("/users")
async def users(page: ManagerPage) -> Response:
    return await _users_page(page)


@router.post("/users")
async def create_user(page: ManagerPage) -> Response:
    form = await page.request.form()
    body = {
        "email": field(form, "email"),
        "name": field(form, "name"),
        "role": field(form, "role"),
        "password": str(form.get("password") or ""),
    }
    problem = await page.submit(form, "POST", "/v1/users", body)
    if isinstance(problem, ApiProblem):
        errors = dict(problem.errors) or {"email": problem.detail or problem.title}
        # the password is never sent back to the browser
        entered = {k: v for k, v in body.items() if k != "password"}
        return await _users_page(page, errors=errors, entered=entered, status_code=problem.status)
    return RedirectResponse("/users?msg=user_created", status_code=303)


@router.post("/users/{user_id}/delete")
async def delete_user(page: ManagerPage, user_id: UUID) -> Response:
    await page.api.send("DELETE", f"/v1/users/{user_id}")
    return RedirectResponse("/users?msg=user_deleted", status_code=303)
