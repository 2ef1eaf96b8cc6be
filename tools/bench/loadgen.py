"""Open-loop load generator: requests leave at their scheduled times, whatever the server does.

A step sends `rate` requests per second for `duration` seconds: request i is scheduled at
t0 + i / rate and its latency is measured from that scheduled time, so a server (or a client)
that falls behind shows it in the latency instead of silently lowering the rate (coordinated
omission). The mix is 70% sales (cash, card, card + bonus, on account; a tenth anonymous),
15% card lookups, 10% debt payments and advances, 5% returns, over many customers of several
chains set up through the public API first.

Sale-to-read-model lag is sampled on "probe" customers: after a probe's sale's 201 the exact
balances the read model must reach are known; the probe polls `GET /v1/customers/{id}` until
they show and records the time. The polls start 20 ms apart and back off to 100 ms: a lag up to
~140 ms is seen within 20-40 ms, and when the pipeline falls behind, the probes (tens of them
at once) do not pile fifty reads a second each onto the gateway they are measuring.

Every customer has at most one state-changing operation in flight (a cashier serves one
customer at a time; a busy customer's turn goes to another one), and each such operation is
recorded in the fault harness's model (`tools.chaos.driver.CustomerModel` / `Operation`), so
that the harness's invariant checker (`tools.chaos.invariants.check`) can be run after a step
has drained. Latency is the FIRST answer's; an answer that is not final (`202`, `429`, 5xx, a
timeout) is then resolved the way a POS does it, in the background: the same request with the
same `Idempotency-Key` again until a final answer, so the model knows every outcome.
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
from typing import Any, TypeVar

import httpx
import uvloop

from pos_gateway.adapters.internal_http import InternalHttpTransport
from tools.chaos.driver import RETRY_STATUSES, ChainKeys, CustomerModel, Operation

BUSINESS_REFUSALS = {
    "insufficient_bonus",
    "insufficient_advance",
    "credit_limit_exceeded",
    "credit_blocked_overdue",
    "no_debt",
    "return_exceeds_sold",
}
CENT = Decimal("0.01")
T = TypeVar("T")


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop, the services' event loop: the generator runs in the process of
    the bench, and what it costs per request is CPU the stack it measures does not get."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


#: the harness's customer model: card, balances after the last accepted answer, operations
Customer = CustomerModel


@dataclass
class ChainFixture:
    keys: ChainKeys
    customers: list[Customer]
    probes: list[Customer]
    free_probes: collections.deque[Customer] = field(default_factory=collections.deque)
    #: completed sales that may be returned: (terminal key, sale id, customer or None)
    returnable: collections.deque[tuple[str, str, Customer | None]] = field(
        default_factory=lambda: collections.deque(maxlen=20_000)
    )

    @property
    def chain_id(self) -> str:
        return self.keys.chain_id

    @property
    def admin_key(self) -> str:
        return self.keys.admin_key

    @property
    def terminal_keys(self) -> list[str]:
        return [key for _store, key in self.keys.terminals]


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
    #: operations whose first answer was not final, re-sent until they had one
    resolved_later: int = 0


@dataclass
class ModelStats:
    """What the model holds over the whole run (every step so far)."""

    customers: int
    operations: int
    accepted: int
    refused: int
    unanswered: int
    resends: int


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
        probe_poll_max_seconds: float = 0.1,
        probe_timeout_seconds: float = 30.0,
        request_timeout_seconds: float = 10.0,
        resolve_seconds: float = 120.0,
        max_connections: int = 1000,
        extra_gateway_urls: tuple[str, ...] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.gateway_url = gateway_url
        self.operator_token = operator_token
        self.rng = random.Random(seed)
        self.probe_share = probe_share
        self.probe_poll_seconds = probe_poll_seconds
        self.probe_poll_max_seconds = probe_poll_max_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self.resolve_seconds = resolve_seconds
        # one client per gateway instance; requests go round-robin over them. Each speaks
        # HTTP/1.1 through the gateway's httptools transport: httpx's own (httpcore and the
        # pure-Python h11) cost the generator ~4x the CPU per request, CPU the stack it
        # measures then lacks on a small machine (docs/benchmarks/notes.md, "Stop 30")
        self.clients = [
            httpx.AsyncClient(
                base_url=url,
                timeout=request_timeout_seconds,
                transport=transport
                or InternalHttpTransport(max_open=max_connections, max_idle=max_connections),
            )
            for url in (gateway_url, *extra_gateway_urls)
        ]
        self.client = self.clients[0]
        self._next_client = 0
        self.chains: list[ChainFixture] = []
        self._stats = StepStats()
        self._pending: set[asyncio.Task[None]] = set()
        #: background re-sends of operations whose first answer was not final
        self._resolving: set[asyncio.Task[None]] = set()
        #: customers with a state-changing operation in flight (id)
        self.busy: set[str] = set()
        self.resends = 0
        self._folded = 0

    async def close(self) -> None:
        for task in list(self._resolving):
            task.cancel()
        if self._resolving:
            await asyncio.gather(*self._resolving, return_exceptions=True)
        for client in self.clients:
            await client.aclose()

    def _pick_client(self) -> httpx.AsyncClient:
        self._next_client = (self._next_client + 1) % len(self.clients)
        return self.clients[self._next_client]

    # ----------------------------------------------------------------------------- the model

    def models(self) -> list[Customer]:
        """Every customer of every chain (the invariants compare chain totals, so all of them,
        also those that had no operation)."""
        return [c for chain in self.chains for c in (*chain.customers, *chain.probes)]

    def model_stats(self) -> ModelStats:
        ops = [op for c in self.models() for op in c.ops]
        return ModelStats(
            customers=len(self.models()),
            operations=len(ops),
            accepted=sum(1 for op in ops if op.accepted),
            refused=sum(1 for op in ops if op.refused),
            unanswered=sum(1 for op in ops if op.status is None),
            resends=self.resends,
        )

    async def settle(self, seconds: float) -> int:
        """Wait until every operation has its final answer (or `seconds`); returns how many
        are still without one (they stay unanswered in the model)."""
        if self._resolving:
            await asyncio.wait(set(self._resolving), timeout=seconds)
        return len(self._resolving)

    # ----------------------------------------------------------------------------- set-up

    async def _post(self, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
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
                terminals.append((store["store_id"], term["api_key"]))
            keys = ChainKeys(chain["chain_id"], "default", admin, terminals)

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
            people = [Customer(keys, m["customer_id"], m["card_number"], True) for m in made]
            fixture = ChainFixture(
                keys=keys,
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
        body["card_number"] = cust.card
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

    def _free_customer(self, chain: ChainFixture, tries: int = 4) -> Customer | None:
        """A customer of the chain without an operation in flight (None: all tried busy)."""
        for _ in range(tries):
            cust = self.rng.choice(chain.customers)
            if cust.customer_id not in self.busy:
                return cust
        return None

    def _free_probe(self, chain: ChainFixture) -> Customer | None:
        """A probe without an operation in flight: a probe is back in `free_probes` once its
        sale is answered, but a return of one of its sales may be in flight then."""
        for _ in range(len(chain.free_probes)):
            probe = chain.free_probes.popleft()
            if probe.customer_id not in self.busy:
                return probe
            chain.free_probes.append(probe)
        return None

    def _choose(self) -> tuple[str, Callable[[float], Coroutine[Any, Any, None]]]:
        chain = self.rng.choice(self.chains)
        terminal = self.rng.choice(chain.terminal_keys)
        roll = self.rng.random()
        if roll < 0.70:
            probe = None
            if self.rng.random() < self.probe_share:
                probe = self._free_probe(chain)
            cust = probe or (None if self.rng.random() < 0.1 else self._free_customer(chain))
            body, kind = self._sale_body(cust)
            op = Operation("sale", "POST", "/v1/sales", body, str(uuid.uuid4()))
            self._claim(cust, op)
            return kind, lambda at: self._sale(chain, terminal, cust, op, kind, at, probe)
        lookup = self.rng.choice(chain.customers)
        card_path = f"/v1/cards/{lookup.card}"
        if roll < 0.85:
            return "card_lookup", lambda at: self._lookup(terminal, card_path, at)
        if roll < 0.95:
            cust = self._free_customer(chain)
            if cust is None:
                return "card_lookup", lambda at: self._lookup(terminal, card_path, at)
            if cust.debt > 0 and self.rng.random() < 0.7:
                body: dict[str, Any] = {
                    "kind": "pay_debt",
                    "method": "cash",
                    "card_number": cust.card,
                }
                op = Operation(
                    "pay_debt",
                    "POST",
                    f"/v1/customers/{cust.customer_id}/payments",
                    body,
                    str(uuid.uuid4()),
                )
            else:
                body = {
                    "amount": _money(Decimal(self.rng.randint(5, 50))),
                    "method": "card",
                    "card_number": cust.card,
                }
                op = Operation(
                    "advance",
                    "POST",
                    f"/v1/customers/{cust.customer_id}/advances",
                    body,
                    str(uuid.uuid4()),
                )
            self._claim(cust, op)
            return op.kind, lambda at: self._operation(op.kind, terminal, cust, op, at)
        if chain.returnable:
            term_key, sale_id, owner = chain.returnable.popleft()
            if owner is not None and owner.customer_id in self.busy:
                chain.returnable.append((term_key, sale_id, owner))  # later, when free
                return "card_lookup", lambda at: self._lookup(terminal, card_path, at)
            body = {"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"}
            op = Operation(
                "return", "POST", f"/v1/sales/{sale_id}/returns", body, str(uuid.uuid4())
            )
            self._claim(owner, op)
            return "return", lambda at: self._operation("return", term_key, owner, op, at)
        return "card_lookup", lambda at: self._lookup(terminal, card_path, at)

    def _claim(self, cust: Customer | None, op: Operation) -> None:
        """The customer is busy from now until the operation's final answer; the operation
        joins its model in the order sent (one at a time per customer)."""
        if cust is not None:
            # the model's premise (one operation per customer at a time): loud if ever broken
            assert cust.customer_id not in self.busy, f"{cust.customer_id} claimed while busy"
            self.busy.add(cust.customer_id)
            cust.ops.append(op)

    # ----------------------------------------------------------------------------- requests

    async def _send(
        self,
        key: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        return await self._pick_client().request(method, path, json=body, headers=headers)

    def _record(
        self, kind: str, at: float, started: float, resp: httpx.Response | None, error: str = ""
    ) -> dict[str, Any] | None:
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

    async def _lookup(self, key: str, path: str, at: float) -> None:
        started = time.perf_counter()
        try:
            resp = await self._send(key, "GET", path, None)
        except httpx.HTTPError as exc:
            self._record("card_lookup", at, started, None, type(exc).__name__)
            return
        self._record("card_lookup", at, started, resp)

    async def _first_answer(
        self, kind: str, key: str, op: Operation, at: float
    ) -> tuple[httpx.Response | None, dict[str, Any] | None]:
        """Send an operation once, record its latency; final answers go into the model."""
        started = time.perf_counter()
        op.sent_at = time.monotonic()
        op.attempts += 1
        try:
            resp = await self._send(key, op.method, op.path, op.body, op.key)
        except httpx.HTTPError as exc:
            self._record(kind, at, started, None, type(exc).__name__)
            return None, None
        parsed = self._record(kind, at, started, resp)
        if resp.status_code not in RETRY_STATUSES:
            _final(op, resp.status_code, parsed, resp.text)
        return resp, parsed

    def _finish(
        self,
        cust: Customer | None,
        op: Operation,
        key: str,
        on_free: Callable[[], None] | None = None,
    ) -> bool:
        """After the first answer: apply a final one to the model and free the customer, or
        resolve the operation in the background (same key) and free the customer then (and
        call `on_free`). Returns True when the answer was final."""
        if op.status is not None:
            self._apply(cust, op)
            return True
        self._stats.resolved_later += 1
        task = asyncio.create_task(self._resolve(cust, op, key, on_free))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)
        return False

    def _apply(self, cust: Customer | None, op: Operation) -> None:
        if cust is not None:
            self._folded += 1
            op.folded = self._folded  # the order answers were folded in (dumped on violations)
            if op.accepted:
                cust.apply(op)
            self.busy.discard(cust.customer_id)

    async def _resolve(
        self,
        cust: Customer | None,
        op: Operation,
        key: str,
        on_free: Callable[[], None] | None = None,
    ) -> None:
        """What a POS does without a final answer: the same request, same key, again."""
        deadline = time.monotonic() + self.resolve_seconds
        pause = 0.2
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                op.attempts += 1
                self.resends += 1
                try:
                    resp = await self._send(key, op.method, op.path, op.body, op.key)
                except httpx.HTTPError:
                    continue
                if resp.status_code in RETRY_STATUSES:
                    if resp.status_code == 429:
                        pause = max(pause, float(resp.headers.get("Retry-After", "1")))
                    continue
                try:
                    parsed = resp.json()
                except ValueError:
                    parsed = None
                _final(
                    op, resp.status_code, parsed if isinstance(parsed, dict) else None, resp.text
                )
                if op.accepted and op.kind == "sale" and cust is not None:
                    self._returnable_for(cust, key, op)
                return
        finally:
            self._apply(cust, op)  # unanswered stays status None: the invariants allow it
            if on_free is not None:
                on_free()

    def _returnable_for(self, cust: Customer | None, terminal: str, op: Operation) -> None:
        for chain in self.chains:
            if cust is None or cust.chain is chain.keys:
                chain.returnable.append((terminal, op.body["sale_id"], cust))
                return

    async def _operation(
        self, kind: str, key: str, cust: Customer | None, op: Operation, at: float
    ) -> None:
        try:
            await self._first_answer(kind, key, op, at)
        finally:
            self._finish(cust, op, key)

    async def _sale(
        self,
        chain: ChainFixture,
        terminal: str,
        cust: Customer | None,
        op: Operation,
        kind: str,
        at: float,
        probe: Customer | None,
    ) -> None:
        final = False

        def free_probe() -> None:
            if probe is not None:
                chain.free_probes.append(probe)

        try:
            try:
                resp, parsed = await self._first_answer(kind, terminal, op, at)
            finally:
                final = self._finish(cust, op, terminal, free_probe)
            if resp is None or resp.status_code != 201 or parsed is None:
                return
            answered = time.perf_counter()
            chain.returnable.append((terminal, op.body["sale_id"], cust))
            bal = _balances(parsed)
            if probe is not None and bal is not None:
                await self._await_read_model(chain, probe, bal, at, answered)
        finally:
            if final:  # else the probe is back once its sale is resolved (`free_probe`)
                free_probe()

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
        pause = self.probe_poll_seconds
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
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.probe_poll_max_seconds)
        self._stats.unresolved_probes += 1

    # ----------------------------------------------------------------------------- a step

    async def run_step(
        self, rate: float, duration: float, drain_timeout: float = 30.0
    ) -> tuple[StepStats, float, float]:
        """Send at `rate` for `duration` s; returns (stats, t0, end of the send window).
        Operations still being resolved (re-sent after a non-final answer) go on in the
        background: `settle()` waits for them."""
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


def _final(op: Operation, status: int, parsed: dict[str, Any] | None, text: str) -> None:
    op.status = status
    op.answered_at = time.monotonic()
    op.answer = parsed if parsed is not None else {"raw": text[:200]}
