"""The back office's ASGI app: pages, static files, health, metrics, and how errors look.

`create_app(settings)` wires everything; `python -m backoffice` serves it with uvicorn. Tests
pass `transport` to talk to a gateway in the same process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from backoffice.config import Settings
from backoffice.gateway import ApiProblem, Gateway, GatewayUnavailable, SessionExpired
from backoffice.i18n import N_, Translator
from backoffice.security import SecurityMiddleware
from backoffice.sessions import Session, SessionCodec
from backoffice.views import admin, auth, customers, reports, tasks
from backoffice.web import (
    ManagersOnly,
    NeedsSignIn,
    TamperedForm,
    is_htmx,
    language_of,
    render,
    session_of,
)
from servicekit.logging import configure_logging
from servicekit.runtime import install_http_metrics

log = logging.getLogger(__name__)


#: the error pages: (heading, explanation), translated when shown
ERRORS: dict[str, tuple[str, str]] = {
    "managers_only": (N_("Not allowed"), N_("This page is for managers.")),
    "forbidden": (N_("Not allowed"), N_("Your role may not do this.")),
    "not_found": (N_("Not found"), N_("There is no such page or record.")),
    "unavailable": (
        N_("Temporarily unavailable"),
        N_(
            "The system behind the back office is not answering right now. Nothing was lost; "
            "please try again in a minute."
        ),
    ),
    "upstream_error": (
        N_("Something went wrong"),
        N_(
            "The system could not complete this. Please try again; if it keeps happening, "
            "tell your administrator."
        ),
    ),
    "crash": (
        N_("Something went wrong"),
        N_(
            "The back office could not show this page. Please try again; if it keeps "
            "happening, tell your administrator."
        ),
    ),
    "refused": (N_("Could not complete this"), N_("The system refused it:")),
    "too_large": (N_("Could not complete this"), N_("The form is too large.")),
    "csrf": (
        N_("The form has expired"),
        N_(
            "The page was open too long or came from somewhere else. Reload the page and try again."
        ),
    ),
}


def error_page(
    request: Request,
    status: int,
    kind: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    t = Translator(language_of(request))
    heading, explanation = ERRORS[kind]
    return render(
        request,
        "error.html",
        status_code=status,
        headers=headers,
        heading=t.gettext(heading),
        explanation=t.gettext(explanation),
        detail=detail,
        back=None,
    )


def _sign_in_redirect(request: Request) -> Response:
    target = "/login"
    if request.method == "GET" and request.url.path not in ("/", "/login"):
        query = request.url.query
        path = request.url.path + (f"?{query}" if query else "")
        target += "?" + str(httpx.QueryParams({"next": path}))
    if is_htmx(request):
        # htmx would swap the sign-in page into a fragment: make it load the whole page
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, exc: NeedsSignIn) -> Response:
        return _sign_in_redirect(request)

    @app.exception_handler(SessionExpired)
    async def session_expired(request: Request, exc: SessionExpired) -> Response:
        # the token died at the gateway (expired, user deleted): start over, signed out
        request.state.session = Session(dirty=True)
        return _sign_in_redirect(request)

    @app.exception_handler(ManagersOnly)
    async def managers_only(request: Request, exc: ManagersOnly) -> Response:
        return error_page(request, 403, "managers_only")

    @app.exception_handler(TamperedForm)
    async def tampered_form(request: Request, exc: TamperedForm) -> Response:
        return error_page(request, 400, "csrf")

    @app.exception_handler(GatewayUnavailable)
    async def unavailable(request: Request, exc: GatewayUnavailable) -> Response:
        return error_page(request, 503, "unavailable", headers={"Retry-After": "30"})

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> Response:
        if exc.status == 403:
            return error_page(request, 403, "forbidden")
        if exc.status in (404, 405):
            return error_page(request, 404, "not_found")
        if exc.status >= 500:
            return error_page(request, 502, "upstream_error")
        return error_page(request, exc.status, "refused", detail=exc.detail or exc.title)

    @app.exception_handler(RequestValidationError)
    async def bad_path(request: Request, exc: RequestValidationError) -> Response:
        # a malformed id or parameter in a URL: no page has it
        return error_page(request, 404, "not_found")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):
            return error_page(request, 404, "not_found")
        return error_page(request, exc.status_code, "refused", detail=str(exc.detail))


async def _crash(request: Request, exc: BaseException) -> Response:
    # logged with its traceback; the page shows none of it
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_page(request, 500, "crash")


async def _refuse(request: Request, reason: str) -> Response:
    return error_page(request, 413 if reason == "too_large" else 403, reason)


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Logging set up at start; the gateway's connections closed at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("backoffice", settings.log_level)
        # httpx logs every request's URL at INFO: search terms (names, phones, cards) would
        # end up in the logs; failures are logged by gateway.py without them
        logging.getLogger("httpx").setLevel(logging.WARNING)
        log.info("backoffice started; gateway %s", settings.gateway_url)
        try:
            yield
        finally:
            await app.state.gateway.close()

    return lifespan


def install_service_routes(app: FastAPI) -> None:
    """What is not a page: the start page's redirect, health and metrics."""

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return RedirectResponse("/tasks" if session_of(request).signed_in else "/login", 303)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(request: Request) -> Response:
        # Ready means "serves pages": while the gateway is down the pages say so (a 503 page
        # with a message), which is better for staff than a load balancer with no backend.
        # The gateway's state is reported, not acted on.
        gateway: Gateway = request.app.state.gateway
        try:
            await gateway.request("GET", "/health/live", token=None)
            upstream = "ok"
        except (GatewayUnavailable, ApiProblem) as exc:
            upstream = f"error: {type(exc).__name__}"
        return JSONResponse({"status": "ok", "checks": {"gateway": upstream}})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="backoffice",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.gateway = Gateway(
        settings.gateway_url, timeout=settings.gateway_timeout_seconds, transport=transport
    )
    codec = SessionCodec(
        settings.session_secret,
        secure=settings.cookie_secure,
        max_age=settings.session_max_age_seconds,
    )
    app.state.codec = codec
    install_error_pages(app)

    static = resources.files("backoffice") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    install_service_routes(app)
    for module in (auth, tasks, customers, reports, admin):
        app.include_router(module.router)

    install_http_metrics(app)
    # outermost: every response, error pages included, gets the headers and the session
    app.add_middleware(SecurityMiddleware, codec=codec, refuse=_refuse, crash=_crash)
    return app
