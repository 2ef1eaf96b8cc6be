"""The floor: what one Python process on this machine does per request with nothing else.

A minimal app (FastAPI, the gateway's own pydantic sale body `pos_gateway.schemas.SaleCreate`,
one asyncpg transaction inserting a request row and an outbox row, one uvicorn process with
uvloop and httptools, like the services) is driven at saturation by a closed-loop client of
raw keep-alive HTTP/1.1 connections (cheaper per request than httpx, so the server, not the
client, is what saturates). Its CPU per request, measured on the same machine minutes apart
from the stack, is the yardstick every bench report divides the stack's CPU per request by:
how many times the work of "take a sale, write it and its command in one transaction" the
stack spends per request.

The app runs on the bench stack's PostgreSQL in a database of its own (`bench_floor`), as
pgbench does; it is started as a subprocess and stopped by its PID, also on failure. Its
connections commit without waiting for the WAL flush (`synchronous_commit = off`): on this
shared machine a flush can take a few hundred milliseconds when other engineers' suites write,
and sixteen connections waiting for it left the app at 15-20% of a core, measuring the disk
instead of the Python work per request, which the setting does not change (the same
statements, the same transaction). The report says how busy the app was (`app_cpu_percent`).
It reaches PostgreSQL the way the services do: through the unix socket when the server URL
names one (devstack's does since stop 23; runs before that measured the floor over TCP).

`python -m bench floor` measures it alone against `DATABASE_URL` (a server URL).
"""

# no `from __future__ import annotations`: FastAPI reads the route's body type at run time
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from bench import procstat
from bench.ceiling import _create_database
from bench.loadgen import percentile
from devstack.ports import free_port
from servicekit.db import plain_url

DATABASE = "bench_floor"
#: the folder `bench` is imported from (the app's process imports it too)
TOOLS = str(Path(__file__).resolve().parent.parent)
PATH = "/v1/sales"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_requests (
    request_id uuid PRIMARY KEY,
    status text NOT NULL,
    request jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS floor_outbox (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    topic text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
TRUNCATE floor_requests, floor_outbox;
"""

_INSERT_REQUEST = (
    "INSERT INTO floor_requests (request_id, status, request) VALUES ($1, 'pending', $2)"
)
_INSERT_OUTBOX = "INSERT INTO floor_outbox (message_id, topic, key, value) VALUES ($1, $2, $3, $4)"


# --------------------------------------------------------------------------------- the app


def build_app(database_url: str, pool_size: int = 16) -> Any:
    """The floor app: POST /v1/sales validates the body and writes two rows in one transaction."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from pos_gateway.schemas import SaleCreate

    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(
            plain_url(database_url),
            min_size=pool_size,
            max_size=pool_size,
            server_settings={"synchronous_commit": "off"},
        )
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post(PATH, status_code=201)
    async def sale(body: SaleCreate) -> JSONResponse:
        assert pool is not None
        request_id = body.sale_id or uuid.uuid4()
        request = body.model_dump_json()
        envelope = json.dumps(
            {
                "message_id": str(uuid.uuid4()),
                "type": "gateway.RecordSale",
                "key": str(request_id),
                "payload": request,
            }
        ).encode()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT_REQUEST, request_id, request)
            await conn.execute(
                _INSERT_OUTBOX, uuid.uuid4(), "pos.commands.v1", str(request_id), envelope
            )
        return JSONResponse({"sale_id": str(request_id), "status": "pending"}, status_code=201)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(database_url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_app(database_url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


# --------------------------------------------------------------------------------- the client


def _sale_bodies(n: int, seed: int = 11) -> list[bytes]:
    """Sale bodies shaped like the load generator's (1-3 lines, one payment)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines, total = [], Decimal(0)
        for i in range(rng.randint(1, 3)):
            qty = rng.randint(1, 2)
            price = Decimal(rng.randint(200, 8000)) / 100
            lines.append(
                {
                    "sku": f"SKU{i}",
                    "barcode": f"48200000{rng.randint(10000, 99999)}",
                    "name": f"Item {i}",
                    "quantity": str(qty),
                    "unit_price": str(price),
                    "discount": "0.00",
                }
            )
            total += price * qty
        body = {
            "card_number": f"B00{rng.randrange(16**10):010X}000001",
            "lines": lines,
            "payments": [{"method": "card", "amount": str(total)}],
        }
        out.append(json.dumps(body).encode())
    return out


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, path: str = PATH
) -> int:
    """One JSON POST on a keep-alive connection; its status (the answer's body read and
    dropped)."""
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


def stop(proc: subprocess.Popen[bytes], within: float = 20.0) -> None:
    """SIGTERM to a process this bench started (by its PID), SIGKILL if it is still there
    after `within` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _connection(
    port: int,
    bodies: list[bytes],
    until: float,
    measure_from: float,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    """One keep-alive connection sending a request as soon as the last one was answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random()
    try:
        while (now := time.perf_counter()) < until:
            status = await post(reader, writer, rng.choice(bodies))
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _start_app(port: int, database_url: str) -> subprocess.Popen[bytes]:
    """The floor app as a process of its own (stopped by its PID by the caller)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TOOLS, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.floor",
            "serve",
            "--port",
            str(port),
            "--database-url",
            database_url,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_up(port: int, proc: subprocess.Popen[bytes], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the floor app exited with {proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            if head[9:12] == b"200":
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the floor app did not come up")


async def measure(
    server_url: str,
    *,
    seconds: float = 20.0,
    warmup_seconds: float = 3.0,
    connections: int = 16,
    postgres_pid: int | None = None,
) -> dict[str, Any]:
    """Start the floor app, drive it at saturation, return requests/s and CPU per request.

    `postgres_pid`: the server's root PID, to report PostgreSQL's CPU per request too (its
    backends are its children). The app's own process is measured alone (Python CPU)."""
    url = await _create_database(server_url, DATABASE)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_SCHEMA)
    finally:
        await conn.close()
    port = free_port()
    proc = await asyncio.to_thread(_start_app, port, url)
    try:
        await _wait_up(port, proc)
        bodies = _sale_bodies(500)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        start = time.perf_counter()
        measure_from = start + warmup_seconds
        until = measure_from + seconds
        roots = {"floor app": proc.pid}
        if postgres_pid is not None:
            roots["postgres"] = postgres_pid
        clients = [
            asyncio.create_task(_connection(port, bodies, until, measure_from, latencies, statuses))
            for _ in range(connections)
        ]
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before = procstat.sample(roots, alone=frozenset({"floor app"}))
        wall0 = time.perf_counter()
        await asyncio.gather(*clients)
        wall = time.perf_counter() - wall0
        after = procstat.sample(roots, alone=frozenset({"floor app"}))
    finally:
        stop(proc)
    usage = procstat.usage(before, after, wall)
    done = len(latencies)
    ok = statuses.get(201, 0)
    if not ok:
        err = proc.stderr.read().decode(errors="replace")[-800:] if proc.stderr else ""
        return {"error": f"no request answered 201 ({statuses}): {err}"}

    def per_request(name: str) -> float | None:
        if name not in usage:
            return None
        return round(usage[name]["cpu_percent"] / 100 * wall * 1000 / done, 3)

    return {
        "requests_per_second": round(done / wall, 1),
        "app_cpu_ms_per_request": per_request("floor app"),
        "postgres_cpu_ms_per_request": per_request("postgres"),
        "app_cpu_percent": usage["floor app"]["cpu_percent"],
        "others_cpu_percent": usage["(others on the machine)"]["cpu_percent"],
        "machine_cpu_percent": usage["(machine, all processes)"]["cpu_percent"],
        "latency_ms": {
            "p50": round((percentile(latencies, 50) or 0) * 1000, 2),
            "p99": round((percentile(latencies, 99) or 0) * 1000, 2),
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "connections": connections,
        "seconds": seconds,
        "measured_at": measured_at(),
    }


def measured_at() -> str:
    """Now, as every bench result records when it was measured (`render` reads it back)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="run the floor app (the bench starts it itself)")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--database-url", required=True)
    args = parser.parse_args(argv)
    serve(args.database_url, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
