"""An httpx transport for the internal APIs: HTTP/1.1 over kept-alive connections, parsed by
httptools (the C parser uvicorn serves with).

A card shown at a till costs the gateway one call of reporting's internal API. Through httpx's
own transport (httpcore and the pure-Python h11) that call cost 1.6 ms of the gateway's CPU,
more than the rest of the lookup; through this one 0.4 ms, httpx's client layer included
(`python -m bench.internal_http`). It speaks only what the internal APIs need: plain HTTP to
the configured base URL, a request body given whole, an answer with a `Content-Length` or
chunked. What httpx's client gives the callers (the `Response`, its `.json()`, the
`httpx.HTTPError` family on failure, the timeout) stays the same.

A connection is reused while the server keeps it alive. A server may close an idle one at any
moment (uvicorn after 5 s): a request that fails on a reused connection is sent once more on a
new one. The internal APIs only read, so this cannot apply anything twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import httpx

#: idle connections kept per transport (a transport talks to one service)
MAX_IDLE = 32
#: connections open at once per transport; further requests wait for one (httpx's default)
MAX_OPEN = 100


class _Answer:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, message: bytes) -> tuple[int, _Answer, bool]:
        """Send one request and read its answer: (status, answer, whether to keep the
        connection). Raises `_Unanswered` when the connection ended before any byte came."""
        self.writer.write(message)
        await self.writer.drain()
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        received = False
        while not answer.complete:
            data = await self.reader.read(65536)
            if not data:
                if not received:
                    self.close()
                    raise _Unanswered
                parser.feed_data(b"")  # an answer delimited by the end of the connection
                if not answer.complete:
                    raise httpx.RemoteProtocolError("the connection ended inside an answer")
                break
            received = True
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(f"unparsable answer: {exc}") from exc
        return parser.get_status_code(), answer, _keeps_alive(parser, answer.headers)


def _keeps_alive(parser: httptools.HttpResponseParser, headers: list[tuple[bytes, bytes]]) -> bool:
    """HTTP/1.1 without `Connection: close` (httptools' `should_keep_alive` answers only inside
    its callbacks)."""
    closes = any(
        name.lower() == b"connection" and b"close" in value.lower() for name, value in headers
    )
    return parser.get_http_version() == "1.1" and not closes


class _Unanswered(Exception):
    """The connection ended before the answer's first byte (a kept-alive one the server had
    closed meanwhile)."""


class InternalHttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to the one host and port of an internal service's base URL.

    `max_open` connections at once (further requests wait for one), `max_idle` kept alive
    between requests."""

    def __init__(self, *, max_open: int = MAX_OPEN, max_idle: int = MAX_IDLE) -> None:
        self._idle: list[_Connection] = []
        self._open = asyncio.Semaphore(max_open)
        self._max_idle = max_idle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = _seconds(request.extensions.get("timeout"))
        head = _head(request, body := await request.aread())
        async with self._open:
            try:
                async with asyncio.timeout(timeout):
                    status, answer = await self._send(request, head + body)
            except TimeoutError as exc:
                raise httpx.ReadTimeout("no answer in time", request=request) from exc
        return httpx.Response(
            status,
            headers=answer.headers,
            content=b"".join(answer.body),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _send(self, request: httpx.Request, message: bytes) -> tuple[int, _Answer]:
        if self._idle:
            try:
                return await self._exchange(self._idle.pop(), message)
            except _Unanswered:
                pass  # a kept-alive connection the server had closed: once more on a new one
        try:
            return await self._exchange(await _connect(request), message)
        except _Unanswered as exc:
            raise httpx.RemoteProtocolError("the server closed the connection") from exc

    async def _exchange(self, conn: _Connection, message: bytes) -> tuple[int, _Answer]:
        try:
            status, answer, keep = await conn.exchange(message)
        except OSError as exc:
            conn.close()
            raise _Unanswered from exc
        except BaseException:
            conn.close()  # a timeout, a parse error: what the connection holds is unknown
            raise
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return status, answer

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def _connect(request: httpx.Request) -> _Connection:
    url = request.url
    if url.scheme != "http":
        raise httpx.UnsupportedProtocol(f"{url.scheme}: only plain http is spoken here")
    try:
        reader, writer = await asyncio.open_connection(url.host, url.port or 80)
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    return _Connection(reader, writer)


def _head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers; the body is sent whole, with its length. The answer is
    asked for uncompressed: it is read whole, over loopback."""
    lines = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1"]
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in (b"accept-encoding", b"content-length", b"transfer-encoding", b"connection"):
            continue
        lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    lines.append("accept-encoding: identity")
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _seconds(timeout: Any) -> float | None:
    """The longest of httpx's timeouts (connect, read, write, pool) for the whole exchange."""
    if not isinstance(timeout, dict):
        return None
    values = [v for v in timeout.values() if v is not None]
    return max(values) if values else None
