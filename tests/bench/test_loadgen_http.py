"""The load generator's own HTTP: it runs on uvloop and speaks HTTP/1.1 over kept-alive
connections (the gateway's httptools transport), so what it costs per request stays small
next to the stack it measures. Here against a plain asyncio server on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvloop
from bench.loadgen import LoadGenerator, run_on_uvloop


async def _serve(seen: list[dict[str, Any]], connections: list[int]) -> asyncio.Server:
    """Answers every request `201` with a JSON body naming its path, keeping the connection."""

    async def one_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break  # the client closed the connection
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, path, _version = request_line.split(" ")
            seen.append({"method": method, "path": path, "headers": headers, "body": body})
            answer = json.dumps({"path": path}).encode()
            writer.write(
                b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(one_connection, "127.0.0.1", 0)


def test_the_generator_runs_on_uvloop_and_keeps_its_connection_alive() -> None:
    seen: list[dict[str, Any]] = []
    connections: list[int] = []

    async def main() -> tuple[bool, list[tuple[int, Any]]]:
        server = await _serve(seen, connections)
        port = server.sockets[0].getsockname()[1]
        gen = LoadGenerator(f"http://127.0.0.1:{port}", "operator")
        try:
            answers = []
            for n in range(3):
                resp = await gen._send(
                    "terminal-key", "POST", f"/v1/sales/{n}", {"n": n}, idempotency_key=f"k-{n}"
                )
                answers.append((resp.status_code, resp.json()))
            resp = await gen._send("terminal-key", "GET", "/v1/cards/C1", None)
            answers.append((resp.status_code, resp.json()))
        finally:
            await gen.close()
            server.close()
            await server.wait_closed()
        return isinstance(asyncio.get_running_loop(), uvloop.Loop), answers

    on_uvloop, answers = run_on_uvloop(main())

    assert on_uvloop
    assert answers == [
        (201, {"path": "/v1/sales/0"}),
        (201, {"path": "/v1/sales/1"}),
        (201, {"path": "/v1/sales/2"}),
        (201, {"path": "/v1/cards/C1"}),
    ]
    # one connection for all four, requests as the gateway expects them
    assert len(connections) == 1
    assert [r["method"] for r in seen] == ["POST", "POST", "POST", "GET"]
    assert [json.loads(r["body"]) for r in seen[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert seen[3]["body"] == b""
    assert [r["headers"]["idempotency-key"] for r in seen[:3]] == ["k-0", "k-1", "k-2"]
    assert "idempotency-key" not in seen[3]["headers"]
    assert {r["headers"]["authorization"] for r in seen} == {"Bearer terminal-key"}
    assert {r["headers"]["content-type"] for r in seen[:3]} == {"application/json"}
