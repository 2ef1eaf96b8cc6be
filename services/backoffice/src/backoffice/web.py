"""What every page shares: who is signed in, their API client, the language, rendering.

Routes take a `Page` (signed-in staff) or `ManagerPage` (managers only) dependency; a visitor
who is not signed in is sent to the sign-in page, customer service asking for a manager's page
gets 403. `render` gives every template the same context (user, CSRF token, language,
formatter, navigation).
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from starlette.datastructures import FormData

from backoffice.gateway import Api, ApiProblem, Gateway
from backoffice.i18n import (
    LANG_COOKIE,
    LANGUAGES,
    N_,
    ChainProfile,
    Formatter,
    Translator,
    negotiate,
)
from backoffice.sessions import Session, User


class NeedsSignIn(Exception):
    """No signed-in session: the visitor goes to the sign-in page (and back afterwards)."""


class ManagersOnly(Exception):
    """A manager's page asked for by customer service."""


class TamperedForm(Exception):
    """A form field holds what no page of ours puts there (answered as an expired form)."""


def query_string(params: dict[str, Any], **changes: Any) -> str:
    """`params` with `changes` applied, as a query string (empty values left out)."""
    merged = {**params, **changes}
    return str(httpx.QueryParams({k: str(v) for k, v in merged.items() if v not in (None, "")}))


def tel_href(phone: Any) -> str:
    """`tel:` plus the digits and a leading + of a phone number: nothing else of what the API
    stored can reach the link (no scheme can be smuggled into the href)."""
    text = str(phone or "")
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    prefix = "+" if text.strip().startswith("+") else ""
    return f"tel:{prefix}{digits}"


def _environment() -> jinja2.Environment:
    folder = resources.files("backoffice") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        # API answers may lack optional fields (older gateways): missing is empty, not an error
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["tel"] = tel_href
    env.filters["short"] = lambda value: str(value or "")[:8]
    env.filters["urlq"] = lambda value: quote(str(value or ""), safe="")
    env.filters["query"] = query_string
    return env


TEMPLATES = _environment()


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


def language_of(request: Request) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


@dataclass
class PageContext:
    """One request of a signed-in user."""

    request: Request
    session: Session
    user: User
    api: Api
    language: str

    @property
    def fmt(self) -> Formatter:
        return Formatter(self.language, ChainProfile(self.session.currency, self.session.timezone))

    @property
    def t(self) -> Translator:
        return Translator(self.language)

    def gettext(self, message: str) -> str:
        return self.t.gettext(message)

    async def submit(
        self,
        form: FormData,
        method: str,
        path: str,
        body: Any = None,
        *,
        shown: tuple[int, ...] = (409, 422),
    ) -> Any:
        """The call a form asks for, under the form's idempotency key: the gateway's answer,
        or the problem when its status is one of `shown` (for the page to show with the form
        again); any other problem is raised."""
        try:
            return await self.api.send(method, path, body, idempotency_key=form_key(form))
        except ApiProblem as exc:
            if exc.status not in shown:
                raise
            return exc


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def signed_in(request: Request) -> PageContext:
    session = session_of(request)
    if not session.signed_in:
        raise NeedsSignIn()
    assert session.user is not None
    return PageContext(
        request=request,
        session=session,
        user=session.user,
        api=Api(gateway_of(request), session.token),
        language=language_of(request),
    )


async def manager(page: Annotated[PageContext, Depends(signed_in)]) -> PageContext:
    if not page.user.is_manager:
        raise ManagersOnly()
    return page


Page = Annotated[PageContext, Depends(signed_in)]
ManagerPage = Annotated[PageContext, Depends(manager)]


def nav_items(user: User | None) -> list[tuple[str, str]]:
    """(path, English label) of the navigation; managers' pages only for managers."""
    if user is None:
        return []
    items = [
        ("/tasks", N_("Tasks")),
        ("/customers", N_("Customers")),
        ("/reports/payment-balance", N_("Payment-Balance")),
        ("/reports/unpaid-goods", N_("Unpaid goods")),
        ("/reports/aging", N_("Aging")),
        ("/reports/bonus-statistics", N_("Bonus statistics")),
    ]
    if user.is_manager:
        items += [
            ("/settings", N_("Settings")),
            ("/stores", N_("Stores and terminals")),
            ("/users", N_("Users")),
        ]
    return items


#: what a `?msg=` after a redirect may say (a code in the URL, never free text)
MESSAGES: dict[str, str] = {
    "completed": N_("The call was recorded."),
    "revoked": N_("The discount was revoked."),
    "saved": N_("Saved."),
    "card_issued": N_("The new card was issued; the previous one is blocked."),
    "card_blocked": N_("The card is blocked."),
    "accrual_cancelled": N_("The payment's bonus accrual was cancelled."),
    "store_created": N_("The store was created."),
    "terminal_revoked": N_("The terminal's key was revoked."),
    "user_created": N_("The user was created."),
    "user_deleted": N_("The user was deleted; their sessions end within a second."),
}


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    session = session_of(request)
    language = language_of(request)
    translator = Translator(language)
    user = session.user if session.signed_in else None
    context: dict[str, Any] = {
        "request": request,
        "user": user,
        "csrf": session.csrf,
        "lang": language,
        "languages": LANGUAGES,
        "_": translator.gettext,
        "ngettext": translator.ngettext,
        "fmt": Formatter(language, ChainProfile(session.currency, session.timezone)),
        "nav": nav_items(user),
        "path": request.url.path,
        "current_url": _local_url(request),
        "new_key": lambda: str(uuid.uuid4()),
        "nonce": secrets.token_hex(4),
        "htmx": is_htmx(request),
        "message": translator.gettext(MESSAGES.get(request.query_params.get("msg", ""), ""))
        if request.query_params.get("msg") in MESSAGES
        else "",
        "csrf_field": Markup('<input type="hidden" name="csrf_token" value="{}">').format(
            session.csrf
        ),
    }
    context.update(values)
    html = TEMPLATES.get_template(template).render(context)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _local_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(value: str | None, default: str = "/tasks") -> str:
    """A local path to go back to after sign-in or a language switch (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


#: what `new_key()` puts in a form's `idem` field is a UUID; a header value must be visible ASCII
_FORM_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def form_key(form: FormData) -> str | None:
    """The form's idempotency key (`idem`), None when it has none (the call gets a fresh one);
    anything but 1 to 200 visible ASCII characters came from no page of ours: `TamperedForm`
    (it would fail as a header, or be refused by the gateway)."""
    value = field(form, "idem")
    if value and not _FORM_KEY.fullmatch(value):
        raise TamperedForm()
    return value or None


def uuid_field(form: FormData, name: str) -> str:
    """A form field that must be an id: anything else is a 404 (it came from no page of ours,
    and must never become part of an API path)."""
    try:
        return str(uuid.UUID(field(form, name)))
    except ValueError:
        raise ApiProblem(404, "not_found") from None
