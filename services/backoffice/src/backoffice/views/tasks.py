"""Tasks: the overdue customers to call, open and done; record a call, revoke a discount.

A task's page (`/tasks/<task_id>`) is what the notifier's email digest links to; it reads the
task with `GET /v1/tasks/{task_id}` (one call, open or done, whatever the number of tasks).
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from backoffice.gateway import ApiProblem
from backoffice.i18n import N_
from backoffice.web import Page, PageContext, field, is_htmx, render, uuid_field

router = APIRouter()

OUTCOMES = ("promised", "no_answer", "disputed", "other")
OUTCOME_LABELS = {
    "promised": N_("Promised to pay"),
    "no_answer": N_("No answer"),
    "disputed": N_("Disputes the debt"),
    "other": N_("Other"),
}


@router.get("/tasks")
async def task_list(
    page: Page, status: Literal["open", "done"] = "open", cursor: str = ""
) -> Response:
    settings = page.request.app.state.settings
    answer = await page.api.get(
        "/v1/tasks", status=status, cursor=cursor or None, limit=settings.page_size
    )
    return render(
        page.request,
        "tasks/list.html",
        status=status,
        tasks=answer.get("items", []),
        next_cursor=answer.get("next"),
        params={"status": status, "cursor": cursor},
        outcomes=OUTCOMES,
        outcome_labels=OUTCOME_LABELS,
        form_errors={},
    )


async def find_task(page: PageContext, task_id: UUID) -> dict[str, Any] | None:
    """The task, or None when the gateway knows no such task of the user's chain."""
    try:
        return dict(await page.api.get(f"/v1/tasks/{task_id}"))
    except ApiProblem as exc:
        if exc.status == 404:
            return None
        raise


@router.get("/tasks/{task_id}")
async def task_page(page: Page, task_id: UUID) -> Response:
    task = await find_task(page, task_id)
    if task is None:
        raise ApiProblem(404, "not_found")
    return render(
        page.request,
        "tasks/one.html",
        task=task,
        outcomes=OUTCOMES,
        outcome_labels=OUTCOME_LABELS,
        form_errors={},
    )


@router.post("/tasks/{task_id}/complete")
async def complete(page: Page, task_id: UUID) -> Response:
    form = await page.request.form()
    body = {"outcome": field(form, "outcome"), "note": field(form, "note")}
    task = await page.submit(form, "POST", f"/v1/tasks/{task_id}/complete", body, shown=(422,))
    if isinstance(task, ApiProblem):
        return await _task_again(page, task_id, task, body)
    if is_htmx(page.request):
        # the card swaps in place: now done, with who completed it
        return render(
            page.request,
            "tasks/_task.html",
            task=task,
            outcomes=OUTCOMES,
            outcome_labels=OUTCOME_LABELS,
            form_errors={},
            just_done=True,
        )
    return RedirectResponse(f"/tasks/{task_id}?msg=completed", status_code=303)


async def _task_again(
    page: PageContext, task_id: UUID, exc: ApiProblem, body: dict[str, str]
) -> Response:
    """The task with the API's 422 messages next to the fields (the user's input kept)."""
    task = await find_task(page, task_id)
    if task is None:
        raise ApiProblem(404, "not_found")
    errors = dict(exc.errors) or {"outcome": exc.detail}
    template = "tasks/_task.html" if is_htmx(page.request) else "tasks/one.html"
    return render(
        page.request,
        template,
        status_code=422,
        task=task,
        outcomes=OUTCOMES,
        outcome_labels=OUTCOME_LABELS,
        form_errors=errors,
        entered=body,
    )


@router.post("/tasks/{task_id}/revoke-discount")
async def revoke_discount(page: Page, task_id: UUID) -> Response:
    form = await page.request.form()
    sale_id = uuid_field(form, "sale_id")
    # 409: already revoked (by the overdue scan or a colleague): done all the same
    await page.submit(form, "POST", f"/v1/sales/{sale_id}/revoke-discount", shown=(409,))
    return RedirectResponse(f"/tasks/{task_id}?msg=revoked", status_code=303)
