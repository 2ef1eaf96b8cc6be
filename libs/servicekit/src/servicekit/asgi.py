"""Plain ASGI helpers for middlewares that read a request's body before the app does (the
gateway's body cap, the back office's CSRF check)."""

from __future__ import annotations

from starlette.types import Message, Receive

__all__ = ["replaying"]


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
