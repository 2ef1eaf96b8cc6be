"""The gateway's ASGI app: public routes on servicekit's runtime (health, metrics, outbox
relay, the `gateway` consumer group of outcome events, the idempotency purge job).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

import pos_gateway
from contracts.topics import CREDIT_EVENTS, LOYALTY_EVENTS
from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.entrypoints.api.auth import KeyCache, TokenBucket
from pos_gateway.entrypoints.api.docs import install_offline_docs
from pos_gateway.entrypoints.api.openapi import install_openapi, operation_id
from pos_gateway.entrypoints.api.problems import install_problem_handlers, problem_response
from pos_gateway.entrypoints.api.routes import router
from pos_gateway.entrypoints.api.staff_routes import router as staff_router
from pos_gateway.service_layer import idempotency, staff
from pos_gateway.service_layer.handlers import BONUS_HANDLERS, HANDLERS, ONE_STATEMENT
from servicekit.asgi import replaying
from servicekit.consumer import Consumer
from servicekit.jobs import PeriodicJob
from servicekit.runtime import Runtime, ServiceDefinition, create_app

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(pos_gateway.__file__).parent / "migrations"
CONSUMER_GROUP = "gateway"

API_DESCRIPTION = """The public API of the VIP credit and loyalty system (a guide to it: the
repository's docs/api.md; the business rules: docs/domain.md).

Money and quantities are decimal strings. Errors are `application/problem+json` with a stable
`code`. State-changing POSTs take an `Idempotency-Key` (required on sales, payments,
advances, refunds and returns).

Staff sign in with `POST /v1/sessions` for a Bearer token: a `manager` may do what the chain
admin key may; `customer_service` may read customers, cards, sales, reports, statements and
tasks, complete tasks, revoke a discount where the chain offers it and cancel a payment's
accrual, and gets `403 forbidden` everywhere else."""


def build_public_app(gw: Gateway) -> FastAPI:
    """The FastAPI app with the public routes and error handling (no runtime attached)."""
    app = FastAPI(
        title="POS gateway",
        version="1.0.0",
        description=API_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # /docs and /redoc come from install_offline_docs, without a CDN
        redoc_url=None,
        generate_unique_id_function=operation_id,  # createSale, not create_sale_v1_sales_post
    )
    install_openapi(app)
    app.state.gateway = gw
    app.state.rate_limiter = TokenBucket(
        gw.settings.rate_limit_per_second, gw.settings.rate_limit_burst
    )
    app.state.key_cache = KeyCache()
    install_problem_handlers(app)
    install_offline_docs(app)
    documentation = list(app.router.routes)  # /openapi.json, /docs, /redoc and the docs' assets
    app.include_router(router)
    app.include_router(staff_router)
    # The API's routes ahead of the documentation's in the app's routing table, which is
    # matched in order on every request (a sale's passed five documentation routes first).
    # None of their paths is the other's, so no request is answered differently.
    app.router.routes[:] = [
        route for route in app.router.routes if route not in documentation
    ] + documentation
    app.add_middleware(JsonBodyGuard)
    app.add_middleware(BodyCap, max_body=gw.settings.max_body_bytes)  # outermost: added last
    return app


class BodyCap:
    """At most `max_body` bytes of request body: a declared `Content-Length` above it is
    answered 413 before anything is read; a body sent without one (chunked) is read here, up
    to the cap, and answered 413 as soon as the cap is passed, so no larger body is ever held
    in memory. Plain ASGI (no `BaseHTTPMiddleware` task and streams per request)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            "payload_too_large", f"the body may be at most {self.max_body} bytes"
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)


#: JSON nested deeper than this is refused (api.md): no request of the API needs more than a
#: few levels, and Python's parser recurses once per level.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays/objects deeper than `limit`. Text that is not
    JSON answers False: the route's own parsing refuses it (`json_invalid`)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case: nothing to parse
        return False
    try:
        document = json.loads(body)
    except RecursionError:  # deeper than the interpreter's recursion limit
        return True
    except ValueError:
        return False
    level: list[tuple[Any, int]] = [(document, 0)]
    while level:
        value, depth = level.pop()
        if isinstance(value, dict | list):
            if depth + 1 > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            level.extend((child, depth + 1) for child in children)
    return False


class JsonBodyGuard:
    """A request body is UTF-8 JSON nested at most `MAX_JSON_DEPTH` deep, else `422
    validation_error` naming `body` (api.md), before any route parses it: Starlette would
    answer the first two with a bare `400` (a code outside the contract), and the parser
    would recurse once per level. Malformed JSON is left to FastAPI, which reports it as
    `json_invalid` (rendered with the same field). The body is read here once and replayed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = None
        if body:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"the body is not UTF-8 (byte {exc.start})"
            else:
                if json_depth_exceeds(body, self.limit):
                    problem = f"JSON nested deeper than {self.limit} levels"
        if problem is not None:
            response = problem_response(
                "validation_error",
                f"body: {problem}",
                errors=[{"field": "body", "message": problem}],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def consumers(settings: Settings | None = None) -> Sequence[Consumer]:
    """Group `gateway`, as two members: credit's outcomes, handed over as soon as they are
    there, and loyalty's events, gathered for `bonus_answers_fetch_wait_ms` (the gateway needs
    only the answers to a payment bonus's cancellation; a sale with a card puts two or three
    other events there, which would each cost a fetch). One group: a member takes a topic's
    partitions, and the offsets committed before the split stay where they are."""
    wait = (
        settings.bonus_answers_fetch_wait_ms
        if settings is not None
        else Settings.model_fields["bonus_answers_fetch_wait_ms"].default
    )
    # No inbox: every handler stores an outcome only on an operation still pending (and counts
    # a return's quantities only then), so an outcome delivered again changes nothing
    # (`test_an_outcome_delivered_again_changes_nothing`); each batch saves a statement.
    # An outcome alone in its batch is stored by one statement that commits by itself
    # (`ONE_STATEMENT`): no BEGIN and COMMIT.
    member = functools.partial(
        Consumer, name=CONSUMER_GROUP, inbox=False, autocommit_for=ONE_STATEMENT
    )
    return [
        member(topics=[CREDIT_EVENTS], handlers=HANDLERS),
        member(
            topics=[LOYALTY_EVENTS],
            handlers=BONUS_HANDLERS,
            fetch_wait_ms=wait,
            own_fetch_wait=True,
        ),
    ]


def make_definition(
    settings: Settings | None = None, gw: Gateway | None = None
) -> ServiceDefinition:
    """The gateway process (`create_app` runs it); `gw`: the parts its routes and consumer
    use, made from `settings` unless given (a test keeps it to look inside)."""
    settings = settings or (gw.settings if gw is not None else Settings())
    gw = gw or Gateway(settings)

    async def on_start(runtime: Runtime) -> None:
        gw.start(runtime.session_factory)
        gw.listen(settings.database_url)

    async def on_stop(_runtime: Runtime) -> None:
        await gw.stop()

    def jobs(runtime: Runtime) -> Sequence[PeriodicJob]:
        def purge(
            rows: Callable[[AsyncSession, timedelta], Awaitable[int]], keep: timedelta, what: str
        ) -> Callable[[], Awaitable[None]]:
            """A job: `rows(session, keep)` deletes what is older than `keep`, in one commit."""

            async def run() -> None:
                async with runtime.session_factory() as session, session.begin():
                    purged = await rows(session, keep)
                if purged:
                    log.info("purged %d %s", purged, what)

            return run

        keys = timedelta(hours=settings.idempotency_keep_hours)
        failures = timedelta(seconds=settings.login_failure_window_seconds)
        return [
            PeriodicJob(
                "idempotency-purge",
                settings.idempotency_purge_interval_seconds,
                purge(idempotency.purge, keys, "idempotency keys"),
            ),
            PeriodicJob(
                "session-purge",
                settings.session_purge_interval_seconds,
                purge(staff.purge, failures, "expired staff tokens and old sign-in failures"),
            ),
        ]

    return ServiceDefinition(
        name="pos-gateway",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=consumers(settings),
        jobs=jobs,
        on_start=on_start,
        on_stop=on_stop,
        app=build_public_app(gw),
    )


settings = Settings()
gateway = Gateway(settings)
app = create_app(make_definition(settings, gateway))
