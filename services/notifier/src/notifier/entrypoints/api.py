"""The internal task API the gateway calls (loopback only, see docs/architecture.md).

`GET .../tasks?status=open|done&limit=&cursor=`, `GET .../tasks/{task_id}` (one task, open or
done: what the back office's page behind an email link reads), `POST .../tasks/{task_id}/complete`,
`PUT .../webhook` and `DELETE .../webhook`, all under `/internal/v1/chains/{chain_id}`; a task
of another chain is `404 {"code": "not_found"}`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.enums import TaskClosedReason, TaskOutcome
from notifier.adapters import webhook_http
from notifier.adapters.repository import Tasks, Webhooks
from notifier.domain.tasks import OPEN
from notifier.domain.webhooks import DestinationRefused, check_secret
from notifier.service_layer.tasks import close_task, lock_customer, outbox_emitter, task_views
from servicekit.db import SessionFactory
from servicekit.paging import BadCursor, decode_cursor, encode_cursor

PREFIX = "/internal/v1/chains/{chain_id}"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: SessionFactory = request.app.state.runtime.session_factory
    async with factory() as session, session.begin():
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


class CompletedBy(BaseModel):
    """The staff user whose token completed the task (the gateway knows it)."""

    model_config = ConfigDict(extra="forbid")
    user_id: uuid.UUID
    name: str = Field(max_length=200)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: TaskOutcome
    note: str | None = Field(default=None, max_length=4000)
    #: null when the chain admin key completed it
    completed_by: CompletedBy | None = None


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    secret: str = Field(min_length=16, max_length=512)


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": "/problems/validation_error",
            "status": 422,
            "title": "The request is not valid",
            "detail": f"{field}: {message}",
            "code": "validation_error",
            "errors": [{"field": field, "message": message}],
        },
        status_code=422,
        media_type="application/problem+json",
    )


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"status": 404, "title": "not found", "detail": "no such task", "code": "not_found"},
        status_code=404,
        media_type="application/problem+json",
    )


#: the routes below, under `PREFIX`; `make_definition` includes it in the app
router = APIRouter(prefix=PREFIX, tags=["internal"])


@router.get("/tasks")
async def list_tasks(
    chain_id: uuid.UUID,
    session: Session,
    status: Literal["open", "done"] = "open",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    after = None
    if cursor:
        try:
            pos = decode_cursor(cursor)
            after = (datetime.fromisoformat(pos["t"]), uuid.UUID(pos["id"]))
        except (BadCursor, KeyError, ValueError, TypeError):
            return JSONResponse(
                {
                    "status": 422,
                    "title": "validation error",
                    "detail": "invalid cursor",
                    "code": "validation_error",
                    "errors": [{"field": "cursor", "message": "invalid cursor"}],
                },
                status_code=422,
                media_type="application/problem+json",
            )
    # open: oldest first (who waits longest is called first); done: latest closed first
    rows = await Tasks(session).page(
        chain_id, status, oldest_first=status == OPEN, after=after, limit=limit + 1
    )
    page = rows[:limit]
    nxt = None
    if len(rows) > limit:
        last = page[-1]
        moment = last.created_at if status == OPEN else last.closed_at
        nxt = encode_cursor({"t": moment.isoformat(), "id": str(last.task_id)})
    return JSONResponse({"items": await task_views(session, page), "next": nxt})


@router.get("/tasks/{task_id}")
async def one_task(chain_id: uuid.UUID, task_id: uuid.UUID, session: Session) -> Response:
    row = await Tasks(session).get(task_id, chain_id)
    if row is None:
        return _not_found()
    [view] = await task_views(session, [row])
    return JSONResponse(view)


@router.post("/tasks/{task_id}/complete")
async def complete_task(
    chain_id: uuid.UUID, task_id: uuid.UUID, body: CompleteRequest, session: Session
) -> Response:
    tasks = Tasks(session)
    customer_id = await tasks.customer_of(chain_id, task_id)
    if customer_id is None:
        return _not_found()
    await lock_customer(session, chain_id, customer_id)
    row = await tasks.get(task_id)
    if row.status == OPEN:
        await close_task(
            session,
            outbox_emitter(session, uuid.uuid4()),
            row,
            reason=TaskClosedReason.COMPLETED,
            now=datetime.now(UTC),
            outcome=body.outcome,
            note=body.note,
            completed_by=(body.completed_by.user_id, body.completed_by.name)
            if body.completed_by is not None
            else None,
        )
        row = await tasks.get(task_id)
    # a task already closed (paid, or completed before) is answered as it is
    [view] = await task_views(session, [row])
    return JSONResponse(view)


@router.put("/webhook")
async def put_webhook(
    request: Request, chain_id: uuid.UUID, body: WebhookRequest, session: Session
) -> Response:
    # checked now, and again at every delivery (the name may resolve elsewhere by then)
    allow_private = request.app.state.runtime.settings.webhook_allow_private
    resolver = getattr(request.app.state, "webhook_resolver", webhook_http.resolve)
    try:
        await webhook_http.checked_destination(
            body.url, allow_private=allow_private, resolver=resolver
        )
    except DestinationRefused as exc:
        return _invalid("url", str(exc))
    try:
        check_secret(body.secret)
    except ValueError as exc:
        return _invalid("secret", str(exc))
    values: dict[str, Any] = {
        "url": body.url,
        "secret": body.secret,
        "updated_at": datetime.now(UTC),
    }
    await Webhooks(session).put(chain_id, values)
    return JSONResponse({"url": body.url, "configured": True})


@router.delete("/webhook")
async def delete_webhook(chain_id: uuid.UUID, session: Session) -> Response:
    await Webhooks(session).delete(chain_id)
    return Response(status_code=204)
