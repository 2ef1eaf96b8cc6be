"""Sign in, sign out, and the language switch.

Signing in exchanges email and password for a gateway token (`POST /v1/sessions`); the token
lives only in the encrypted session cookie. A wrong email and a wrong password look the same,
as the gateway answers them the same.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from backoffice.gateway import Api, ApiProblem, GatewayUnavailable
from backoffice.i18n import LANG_COOKIE, LANGUAGES, ChainProfile, Translator
from backoffice.sessions import Session, User
from backoffice.web import field, gateway_of, language_of, render, safe_next, session_of

router = APIRouter()

#: a year: the language is a preference, not a secret
LANG_MAX_AGE = 365 * 24 * 3600


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    if session_of(request).signed_in:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), email="", errors={}, problem="")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email, password = field(form, "email"), str(form.get("password") or "")
    target = safe_next(field(form, "next"))
    t = Translator(language_of(request))
    gateway = gateway_of(request)
    try:
        answer = await Api(gateway, None).send(
            "POST", "/v1/sessions", {"email": email, "password": password}
        )
    except ApiProblem as exc:
        if exc.status == 401:
            problem = t.gettext("Wrong email or password.")
        elif exc.status == 429:
            problem = t.gettext("Too many failed attempts. Wait a while, then try again.")
        elif exc.status == 422:
            problem = t.gettext("Please check the fields marked below.")
        else:
            raise
        return render(
            request,
            "login.html",
            status_code=exc.status,
            next=target,
            email=email,
            errors=exc.errors,
            problem=problem,
            headers={"Retry-After": exc.retry_after} if exc.retry_after else None,
        )
    request.state.session = await _new_session(request, answer)
    return RedirectResponse(target, status_code=303)


async def _new_session(request: Request, answer: dict[str, Any]) -> Session:
    """A fresh session (a new CSRF token too) for the user the gateway just vouched for."""
    settings = request.app.state.settings
    user_body = answer["user"]
    user = User(
        user_id=str(user_body["user_id"]),
        email=str(user_body["email"]),
        name=str(user_body["name"]),
        role=str(user_body["role"]),
        chain_id=str(user_body.get("chain_id") or ""),
    )
    expires = time.time() + settings.session_max_age_seconds
    if answer.get("expires_at"):
        token_end = datetime.fromisoformat(str(answer["expires_at"])).timestamp()
        expires = min(expires, token_end)
    # the chain's currency and time zone: `chain` of the answer (api.md leaves extra fields
    # open; the gateway gives them there), else the settings where a manager may read them
    bodies: list[Any] = [answer.get("chain"), user_body, answer]
    if user.is_manager and not ChainProfile.from_api(*bodies).complete:
        with contextlib.suppress(ApiProblem, GatewayUnavailable):
            bodies.append(
                await Api(gateway_of(request), answer["access_token"]).get("/v1/settings")
            )
    profile = ChainProfile.from_api(*bodies)
    return Session(
        token=str(answer["access_token"]),
        user=user,
        expires=expires,
        currency=profile.currency,
        timezone=profile.timezone,
        dirty=True,
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    """The gateway ends the token (`DELETE /v1/sessions/current`), then the cookie is replaced
    by an anonymous one. Signing out works even when the gateway cannot be reached: the cookie
    is gone either way (the token then lives until it expires)."""
    session = session_of(request)
    if session.token:
        with contextlib.suppress(ApiProblem, GatewayUnavailable):
            await Api(gateway_of(request), session.token).send("DELETE", "/v1/sessions/current")
    request.state.session = Session(dirty=True)
    return RedirectResponse("/login", status_code=303)


@router.post("/lang")
async def switch_language(request: Request) -> Response:
    form = await request.form()
    language = field(form, "lang")
    response = RedirectResponse(safe_next(field(form, "next"), "/"), status_code=303)
    if language in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            language,
            max_age=LANG_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.app.state.settings.cookie_secure,
        )
    return response
