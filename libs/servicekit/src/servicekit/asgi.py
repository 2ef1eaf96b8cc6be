"""Plain ASGI helpers for middlewares: one that reads a request's body before the app does
(the gateway's body cap, the back office's CSRF check), and one that answers an exception
itself (the gateway's problem+json, the back office's error page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["answer_unless_started", "replaying"]


def replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app behind a middleware that has read the whole body already: the
    body once, as one message, then whatever the connection says next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def answer_unless_started(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    answer: Callable[[Exception], Awaitable[ASGIApp]],
) -> None:
    """Run `app`; an exception it raises before its answer has started is answered with
    `answer(exc)` instead, and goes no further. One raised after the answer has started cannot
    be answered any more: it is raised again, and the server closes the connection, the only
    honest thing left to do."""
    started = False

    async def send_tracked(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, send_tracked)
    except Exception as exc:
        if started:
            raise
        response = await answer(exc)
        await response(scope, receive, send)
