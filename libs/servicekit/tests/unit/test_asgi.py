"""`replaying`: the app behind a middleware that read the body gets that body once, then the
connection's own messages. `answer_unless_started`: an exception is answered by the
middleware only while the app's answer has not started."""

from __future__ import annotations

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.asgi import answer_unless_started, replaying


async def test_the_body_comes_once_then_the_connection_speaks() -> None:
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        return {"type": "http.disconnect"}

    replay = replaying(b'{"a": 1}', receive)
    assert await replay() == {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
    assert calls == 0  # the body is not read from the connection again
    assert await replay() == {"type": "http.disconnect"}
    assert await replay() == {"type": "http.disconnect"}
    assert calls == 2


async def test_an_empty_body_is_replayed_as_one_empty_message() -> None:
    async def receive() -> Message:
        raise AssertionError("the connection is not read before the body is replayed")

    replay = replaying(b"", receive)
    assert await replay() == {"type": "http.request", "body": b"", "more_body": False}


async def _run(app: ASGIApp) -> tuple[list[Message], list[Exception]]:
    sent: list[Message] = []
    answered: list[Exception] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def answer(exc: Exception) -> ASGIApp:
        answered.append(exc)
        return PlainTextResponse("sorry", status_code=500)

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await answer_unless_started(app, scope, receive, send, answer)
    return sent, answered


async def test_an_error_before_the_answer_started_is_answered_and_goes_no_further() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("boom")

    sent, answered = await _run(app)
    assert [type(e) for e in answered] == [KeyError]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 500
    assert sent[1]["body"] == b"sorry"


async def test_an_error_after_the_answer_started_is_raised_not_answered_twice() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await _run(app)


async def test_an_app_that_answers_is_passed_through() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("fine")(scope, receive, send)

    sent, answered = await _run(app)
    assert answered == []
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"fine"
