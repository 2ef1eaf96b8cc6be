"""The public routes of staff accounts (api.md "Staff accounts"): users and sessions."""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from pos_gateway import schemas as s
from pos_gateway.bootstrap import Gateway
from pos_gateway.entrypoints.api.auth import (
    AdminKey,
    OptionalIdempotencyKey,
    StaffUser,
    gateway_dependency,
)
from pos_gateway.entrypoints.api.routes import AUTH, problems, to_response
from pos_gateway.service_layer import staff
from pos_gateway.service_layer.common import request_hash

Gw = Annotated[Gateway, Depends(gateway_dependency)]

router = APIRouter(prefix="/v1")


@router.post(
    "/users",
    status_code=201,
    response_model=s.UserOut,
    tags=["staff"],
    responses=problems(*AUTH, 409, 422),
)
async def create_user(
    request: Request,
    gw: Gw,
    principal: AdminKey,
    body: s.UserCreate,
    idempotency_key: OptionalIdempotencyKey,
) -> JSONResponse:
    """A staff user of the chain (chain admin key or a manager): `manager` may do what the
    admin key may; `customer_service` reads customers, cards, reports, statements and tasks,
    completes tasks, revokes an offered discount and cancels a payment's accrual."""
    raw: dict[str, Any] = json.loads(await request.body())
    # the password stays out of the stored request hash (see staff.create_user)
    raw.pop("password", None)
    answer = await staff.create_user(
        gw,
        principal,
        body,
        idempotency_key,
        request_hash(request.method, request.url.path, raw),
    )
    return to_response(answer)


@router.get("/users", response_model=s.UserPage, tags=["staff"], responses=problems(*AUTH, 422))
async def list_users(
    gw: Gw,
    principal: AdminKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> JSONResponse:
    """The chain's users by email; `next` pages on."""
    async with gw.read() as session:
        page = await staff.list_users(session, principal, limit=limit, cursor=cursor)
    return JSONResponse(page)


@router.delete(
    "/users/{user_id}", response_model=s.UserDeleted, tags=["staff"], responses=problems(*AUTH, 404)
)
async def delete_user(gw: Gw, principal: AdminKey, user_id: UUID) -> JSONResponse:
    """Delete a user: it cannot sign in any more and its tokens answer 401 from now on."""
    async with gw.session() as session, session.begin():
        return JSONResponse(await staff.delete_user(session, principal, user_id))


@router.post(
    "/sessions",
    status_code=201,
    response_model=s.SessionCreated,
    tags=["staff"],
    responses=problems(401, 422, 429),
)
async def sign_in(gw: Gw, body: s.SessionCreate) -> JSONResponse:
    """Email and password for a Bearer token (no key needed). A wrong email and a wrong
    password get the same 401; after repeated failures for one email, 429 with Retry-After."""
    return to_response(await staff.sign_in(gw, body))


@router.get(
    "/sessions/current",
    response_model=s.SessionOut,
    tags=["staff"],
    operation_id="getCurrentSession",
    responses=problems(*AUTH),
)
async def current_session(gw: Gw, principal: StaffUser) -> JSONResponse:
    """The signed-in user, its chain (currency, time zone) and when the token expires."""
    async with gw.read() as session:
        return JSONResponse(await staff.current_session(session, principal))


@router.delete(
    "/sessions/current",
    status_code=204,
    tags=["staff"],
    responses={
        204: {"description": "Signed out: this token answers 401 from now on"},
        **problems(*AUTH),
    },
)
async def sign_out(gw: Gw, principal: StaffUser) -> Response:
    """Sign out: this token answers 401 from now on."""
    async with gw.session() as session, session.begin():
        await staff.sign_out(session, principal)
    return Response(status_code=204)
