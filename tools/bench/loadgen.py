"""Open-loop load generator: requests leave at their scheduled times, whatever the server does.

A step sends `rate` requests per second for `duration` seconds: request i is scheduled at
t0 + i / rate and its latency is measured from that scheduled time, so a server (or a client)
that falls behind shows it in the latency instead of silently lowering the rate (coordinated
omission). The mix is 70% sales (cash, card, card + bonus, on account; a tenth anonymous),
15% card lookups, 10% debt payments and advances, 5% returns, over many customers of several
chains set up through the public API first.

Sale-to-read-model lag is sampled on "probe" customers: a probe customer only ever has one
operation in flight, so after its sale's 201 the exact balances the read model must reach are
known; the probe polls `GET /v1/customers/{id}` until they show and records the time.
"""

from __future__ import annotations

import asyncio
import collections
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

BUSINESS_REFUSALS = {
    "insufficient_bonus",
    "insufficient_advance",
    "credit_limit_exceeded",
    "credit_blocked_overdue",
    "no_debt",
    "return_exceeds_sold",
}
CENT = Decimal("0.01")


@dataclass
class Customer:
    customer_id: str
    card_number: str
    debt: Decimal = Decimal(0)
    advance: Decimal = Decimal(0)
    bonus: Decimal = Decimal(0)


@dataclass
class ChainFixture:
    chain_id: str
    admin_key: str
    terminal_keys: list[str]
    customers: list[Customer]
    probes: list[Customer]
    free_probes: collections.deque[Customer] = field(default_factory=collections.deque)
    returnable: collections.deque[tuple[str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )


@dataclass
class Record:
    kind: str
    status: int
    latency: float
    send_lag: float
    code: str = ""


@dataclass
class StepStats:
    records: list[Record] = field(default_factory=list)
    read_lags: list[float] = field(default_factory=list)
    read_lags_from_send: list[float] = field(default_factory=list)
    unresolved_probes: int = 0
    probe_reads: int = 0
    last_done: float = 0.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _balances(body: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal] | None:
    cust = body.get("customer")
    if not isinstance(cust, dict):
        return None
    return Decimal(cust["debt"]), Decimal(cust["advance"]), Decimal(cust["bonus_balance"])


class LoadGenerator:
    def __init__(
        self,
        gateway_url: str,
        operator_token: str,
        *,
        seed: int = 7,
        probe_share: float = 0.1,
        probe_poll_seconds: float = 0.02,
        probe_timeout_seconds: float = 30.0,
        request_timeout_seconds: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        self.gateway_url = gateway_url
        self.operator_token = operator_token
        self.rng = random.Random(seed)
        self.probe_share = probe_share
        self.probe_poll_seconds = probe_poll_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self.client = httpx.AsyncClient(
            base_url=gateway_url,
            timeout=request_timeout_seconds,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self.chains: list[ChainFixture] = []
        self._stats = StepStats()
        self._pending: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await self.client.aclose()

    # ----------------------------------------------------------------------------- set-up

    async def _post(self, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {key}"}
        )
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"set-up {path}: {resp.status_code} {resp.text[:300]}")
        return dict(resp.json())

    async def setup(
        self,
        *,
        chains: int,
        stores_per_chain: int,
        customers_per_chain: int,
        probes_per_chain: int,
        concurrency: int = 16,
    ) -> None:
        """Chains, stores, one terminal per store and VIP customers with cards, via the API."""
        sem = asyncio.Semaphore(concurrency)

        async def limited(coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
            async with sem:
                return await coro

        for c in range(chains):
            chain = await self._post(
                self.operator_token,
                "/v1/chains",
                {"name": f"Bench chain {c}", "currency": "EUR", "timezone": "Europe/Bucharest"},
            )
            admin = chain["admin_api_key"]
            terminals = []
            for s in range(stores_per_chain):
                store = await self._post(admin, "/v1/stores", {"code": f"S{s}", "name": f"S {s}"})
                term = await self._post(
                    admin, f"/v1/stores/{store['store_id']}/terminals", {"name": "Till 1"}
                )
                terminals.append(term["api_key"])

            def customer_body(i: int, c: int = c) -> dict[str, Any]:
                return {
                    "name": f"Customer {c}-{i}",
                    "phone": f"+4071{c:02d}{i:05d}",
                    "vip": True,
                    "bonus_accrual": True,
                    "card_number": f"B{c:02d}{secrets.token_hex(5).upper()}{i:06d}",
                }

            made = await asyncio.gather(
                *(
                    limited(self._post(admin, "/v1/customers", customer_body(i)))
                    for i in range(customers_per_chain + probes_per_chain)
                )
            )
            people = [Customer(m["customer_id"], m["card_number"]) for m in made]
            fixture = ChainFixture(
                chain_id=chain["chain_id"],
                admin_key=admin,
                terminal_keys=terminals,
                customers=people[:customers_per_chain],
                probes=people[customers_per_chain:],
            )
            fixture.free_probes.extend(fixture.probes)
            self.chains.append(fixture)

    # ----------------------------------------------------------------------------- the mix

    def _lines(self) -> tuple[list[dict[str, str]], Decimal]:
        lines = []
        total = Decimal(0)
        for n in range(self.rng.randint(1, 3)):
            qty = self.rng.randint(1, 2)
            price = Decimal(self.rng.randint(200, 8000)) / 100
            lines.append(
                {
                    "sku": f"SKU{n}",
                    "barcode": f"48200000{self.rng.randint(10000, 99999)}",
                    "name": f"Item {n}",
                    "quantity": str(qty),
                    "unit_price": _money(price),
                    "discount": "0.00",
                }
            )
            total += price * qty
        return lines, total

    def _sale_body(self, cust: Customer | None) -> tuple[dict[str, Any], str]:
        lines, total = self._lines()
        body: dict[str, Any] = {"sale_id": str(uuid.uuid4()), "lines": lines}
        if cust is None:
            body["payments"] = [{"method": "cash", "amount": _money(total)}]
            return body, "sale_anonymous"
        body["card_number"] = cust.card_number
        roll = self.rng.random()
        if roll < 0.3:
            body["payments"] = [{"method": "cash", "amount": _money(total)}]
            return body, "sale_cash"
        if roll < 0.6:
            body["payments"] = [{"method": "card", "amount": _money(total)}]
            return body, "sale_card"
        if roll < 0.8 and cust.bonus >= Decimal("1.00"):
            spend = min(cust.bonus, total / 2).quantize(CENT, rounding="ROUND_DOWN")
            body["payments"] = [
                {"method": "bonus", "amount": _money(spend)},
                {"method": "card", "amount": _money(total - spend)},
            ]
            return body, "sale_mixed_bonus"
        body["payments"] = [{"method": "on_account", "amount": _money(total)}]
        return body, "sale_on_account"

    def _choose(self) -> tuple[str, Callable[[float], Coroutine[Any, Any, None]]]:
        chain = self.rng.choice(self.chains)
        terminal = self.rng.choice(chain.terminal_keys)
        roll = self.rng.random()
        if roll < 0.70:
            probe = None
            if self.rng.random() < self.probe_share and chain.free_probes:
                probe = chain.free_probes.popleft()
            cust = probe or (
                None if self.rng.random() < 0.1 else self.rng.choice(chain.customers)
            )
            body, kind = self._sale_body(cust)
            return kind, lambda at: self._sale(chain, terminal, cust, body, kind, at, probe)
        cust = self.rng.choice(chain.customers)
        if roll < 0.85:
            return "card_lookup", lambda at: self._request(
                "card_lookup", terminal, "GET", f"/v1/cards/{cust.card_number}", None, at, cust
            )
        if roll < 0.95:
            if cust.debt > 0 and self.rng.random() < 0.7:
                body = {"kind": "pay_debt", "method": "cash", "card_number": cust.card_number}
                kind = "pay_debt"
                path = f"/v1/customers/{cust.customer_id}/payments"
            else:
                body = {
                    "amount": _money(Decimal(self.rng.randint(5, 50))),
                    "method": "card",
                    "card_number": cust.card_number,
                }
                kind = "advance"
                path = f"/v1/customers/{cust.customer_id}/advances"
            return kind, lambda at: self._request(kind, terminal, "POST", path, body, at, cust)
        if chain.returnable:
            term_key, sale_id = chain.returnable.popleft()
            body = {"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"}
            return "return", lambda at: self._request(
                "return", term_key, "POST", f"/v1/sales/{sale_id}/returns", body, at, None
            )
        return "card_lookup", lambda at: self._request(
            "card_lookup", terminal, "GET", f"/v1/cards/{cust.card_number}", None, at, cust
        )

    # ----------------------------------------------------------------------------- requests

    async def _send(
        self, key: str, method: str, path: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        return await self.client.request(method, path, json=body, headers=headers)

    def _record(self, kind: str, at: float, started: float, resp: httpx.Response | None,
                error: str = "") -> dict[str, Any] | None:
        done = time.perf_counter()
        self._stats.last_done = max(self._stats.last_done, done)
        if resp is None:
            self._stats.records.append(Record(kind, 0, done - at, started - at, error))
            return None
        code = ""
        parsed: dict[str, Any] | None = None
        try:
            parsed = resp.json()
        except ValueError:
            parsed = None
        if resp.status_code >= 400 and isinstance(parsed, dict):
            code = str(parsed.get("code", ""))
        self._stats.records.append(Record(kind, resp.status_code, done - at, started - at, code))
        return parsed if isinstance(parsed, dict) else None

    async def _request(
        self,
        kind: str,
        key: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        at: float,
        cust: Customer | None,
    ) -> None:
        started = time.perf_counter()
        try:
            resp = await self._send(key, method, path, body)
        except httpx.HTTPError as exc:
            self._record(kind, at, started, None, type(exc).__name__)
            return
        parsed = self._record(kind, at, started, resp)
        if cust is not None and parsed is not None and resp.status_code in (200, 201):
            if kind == "card_lookup":
                cust.debt, cust.advance = Decimal(parsed["debt"]), Decimal(parsed["advance"])
                cust.bonus = Decimal(parsed["bonus_balance"])
            elif (bal := _balances(parsed)) is not None:
                cust.debt, cust.advance, cust.bonus = bal

    async def _sale(
        self,
        chain: ChainFixture,
        terminal: str,
        cust: Customer | None,
        body: dict[str, Any],
        kind: str,
        at: float,
        probe: Customer | None,
    ) -> None:
        started = time.perf_counter()
        try:
            try:
                resp = await self._send(terminal, "POST", "/v1/sales", body)
            except httpx.HTTPError as exc:
                self._record(kind, at, started, None, type(exc).__name__)
                return
            parsed = self._record(kind, at, started, resp)
            if resp.status_code != 201 or parsed is None:
                return
            answered = time.perf_counter()
            chain.returnable.append((terminal, body["sale_id"]))
            bal = _balances(parsed)
            if cust is not None and bal is not None:
                cust.debt, cust.advance, cust.bonus = bal
            if probe is not None and bal is not None:
                await self._await_read_model(chain, probe, bal, at, answered)
        finally:
            if probe is not None:
                chain.free_probes.append(probe)

    async def _await_read_model(
        self,
        chain: ChainFixture,
        probe: Customer,
        expected: tuple[Decimal, Decimal, Decimal],
        at: float,
        answered: float,
    ) -> None:
        deadline = answered + self.probe_timeout_seconds
        headers = {"Authorization": f"Bearer {chain.admin_key}"}
        while time.perf_counter() < deadline:
            self._stats.probe_reads += 1
            try:
                resp = await self.client.get(f"/v1/customers/{probe.customer_id}", headers=headers)
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code == 200:
                got = resp.json()
                seen = (
                    Decimal(got["debt"]),
                    Decimal(got["advance"]),
                    Decimal(got["bonus_balance"]),
                )
                if seen == expected:
                    now = time.perf_counter()
                    self._stats.read_lags.append(now - answered)
                    self._stats.read_lags_from_send.append(now - at)
                    return
            await asyncio.sleep(self.probe_poll_seconds)
        self._stats.unresolved_probes += 1

    # ----------------------------------------------------------------------------- a step

    async def run_step(self, rate: float, duration: float, drain_timeout: float = 30.0) -> tuple[
        StepStats, float, float
    ]:
        """Send at `rate` for `duration` s; returns (stats, t0, end of the send window)."""
        self._stats = StepStats()
        total = int(rate * duration)
        t0 = time.perf_counter() + 0.05
        for i in range(total):
            at = t0 + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            _kind, fire = self._choose()
            task = asyncio.create_task(fire(at))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        window_end = t0 + total / rate
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=drain_timeout)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        return self._stats, t0, window_end
