"""`replaying`: the app behind a middleware that read the body gets that body once, then the
connection's own messages."""

from __future__ import annotations

from starlette.types import Message

from servicekit.asgi import replaying


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
