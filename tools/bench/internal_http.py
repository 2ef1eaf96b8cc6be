"""The gateway's CPU per call of an internal API: httpx's own transport against the gateway's
`InternalHttpTransport` (`pos_gateway.adapters.internal_http`), alternating, in rounds.

A uvicorn server in a process of its own answers a card's balances the way reporting does
(a small JSON object); this process calls it through an `httpx.AsyncClient` with one transport
or the other and measures its own CPU (`time.process_time`) per call, so the server's work is
not in the figure. It prints the median and range per transport:

    PYTHONPATH=tools .venv/bin/python -m bench.internal_http --calls 500 --rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

import httpx

from pos_gateway.adapters.internal_http import InternalHttpTransport

_SERVER = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/internal/v1/chains/{chain_id}/customers/{customer_id}/balances")
async def balances(chain_id: str, customer_id: str) -> dict:
    return {"debt": "12.50", "advance": "0.00", "bonus_balance": "3.40", "overdue": False}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
PATH = "/internal/v1/chains/{}/customers/{}/balances".format(
    "6f7e2c1a-0000-4000-8000-000000000001", "6f7e2c1a-0000-4000-8000-000000000002"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _calls(client: httpx.AsyncClient, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        (await client.get(PATH)).json()
    return (time.process_time() - started) / calls * 1000


async def _run(port: int, calls: int, rounds: int) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{port}"
    clients = {
        "httpx": httpx.AsyncClient(base_url=base),
        "internal_http": httpx.AsyncClient(base_url=base, transport=InternalHttpTransport()),
    }
    for _ in range(50):  # the server up
        try:
            await clients["httpx"].get(PATH)
            break
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    spent: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for n in range(rounds):
            order = list(clients) if n % 2 else list(reversed(clients))
            for name in order:
                await _calls(clients[name], 20)  # warm
                spent[name].append(await _calls(clients[name], calls))
    finally:
        for client in clients.values():
            await client.aclose()
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.internal_http")
    parser.add_argument("--calls", type=int, default=500, help="calls per round and transport")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    try:
        spent = asyncio.run(_run(port, args.calls, args.rounds))
    finally:
        server.terminate()
        server.wait(10)
    print(
        json.dumps(
            {
                name: {
                    "cpu_ms_per_call_median": round(statistics.median(values), 3),
                    "range": [round(min(values), 3), round(max(values), 3)],
                }
                for name, values in spent.items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
