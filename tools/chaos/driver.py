"""The POS side of the chaos run: a seeded mix of realistic till and back-office operations,
sent through the gateway the way a real POS sends them, and the model of what was accepted.

A real POS that gets no final answer (timeout, connection refused, 5xx, 429, 202) sends the
SAME request again with the SAME `Idempotency-Key` until it gets one; so does this driver.
Each customer's operations are sent one after the other (a cashier serves one customer at a
time), many customers in parallel: so the customer snapshot of the last final answer is what
the system must show once it has drained, and every operation has a final answer before the
next one of that customer starts.

The model is the set of accepted operations (the `201`/`200` answers) with the ids they
carry (sale, payment, refund, return ids) and the refused ones (`422`); the invariants
(`invariants.py`) compare it with the customer statements, balances and reports.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from tools.chaos import hostile as hostile_input

MONEY = Decimal("0.01")
#: Answers after which a POS sends the same request again (same key, same body).
RETRY_STATUSES = frozenset({202, 429, 500, 502, 503, 504})
#: a held driver's traffic goes on this long after the scenario's first fault (`hold_for_fault`)
AFTER_FAULT_SECONDS = 2.0
#: the chains' maximum payment delay (the default); a sale sent with an `occurred_at` older
#: than this (and a day's margin for the chain's time zone) is overdue while it owes anything
PAYMENT_DELAY = timedelta(days=30 + 1)
#: share of the operations of a customer of an `offer` chain that are discount revocations
REVOKE_SHARE = 0.03
#: share of the VIP customers of an `offer` chain with a planned revocation: a back-dated
#: discounted sale on account, its revocation asked two to six operations later, or at the
#: customer's first operation after the scenario's first fault if that comes sooner; the
#: customer's operations in between bring in no money (`keeps_sale_owed`)
REVOKER_SHARE = 0.5
#: a planned revocation's sale is among the customer's first this many operations
PLANNED_WITHIN = 40
#: the final answers a revocation may get: 200, or one of these refusals (status, code);
#: `operation_failed`: an attempt that failed for good on its way (the next one is free)
REVOKE_REFUSALS = frozenset(
    {(409, "already_revoked"), (422, "not_overdue"), (422, "operation_failed")}
)


def money(value: Decimal) -> str:
    return str(value.quantize(MONEY))


def _past_due(occurred_at: object) -> bool:
    """Whether a sale sent with this `occurred_at` is past its due date (overdue while owed)."""
    if not isinstance(occurred_at, str):
        return False
    return datetime.now(UTC) - datetime.fromisoformat(occurred_at) > PAYMENT_DELAY


@dataclass
class ChainKeys:
    """One chain set up through the public API: admin key, terminals per store."""

    chain_id: str
    mode: str
    admin_key: str
    terminals: list[tuple[str, str]]  # (store_id, terminal api key)
    #: the chain's `overdue_discount`: the driver asks revocations only where it is `offer`
    overdue_discount: str = "keep"


@dataclass
class Operation:
    """One request as the POS sent it, and its final answer (None: never got one)."""

    kind: str
    method: str
    path: str
    body: dict[str, Any]
    key: str
    admin: bool = False
    status: int | None = None
    answer: dict[str, Any] | None = None
    attempts: int = 0
    sent_at: float = 0.0
    answered_at: float = 0.0  # when the final answer came (monotonic), 0: none yet
    folded: int = 0  # the load generator's order of folding answers into the model
    api_key: str = ""  # the key it was sent with (a retry must use the same one)
    #: hostile input (tools/chaos/hostile.py): its kind, and the final statuses (and problem
    #: codes) it may get; anything else is a violation. Empty for ordinary traffic.
    hostile: str = ""
    expect: frozenset[int] = frozenset()
    expect_codes: frozenset[str] = frozenset()
    answers_5xx: int = 0  # 5xx answers it got on the way (the POS sent it again after each)
    last_5xx: str = ""  # the last of them: status and problem code
    planned: bool = False  # a planned revocation (`revocation_plan`), not one of the mix's

    @property
    def accepted(self) -> bool:
        return self.status in (200, 201)

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


@dataclass
class CustomerModel:
    """What the driver knows about one customer: its operations in order, and what the last
    accepted answer said (debt, advance, bonus balance after it)."""

    chain: ChainKeys
    customer_id: str
    card: str
    vip: bool
    credit_limit: Decimal | None = None
    ops: list[Operation] = field(default_factory=list)
    debt: Decimal = Decimal(0)
    advance: Decimal = Decimal(0)
    bonus: Decimal = Decimal(0)
    #: completed sales: sale_id -> [(line_no, quantity sold, quantity returned)]
    sales: dict[str, list[list[int]]] = field(default_factory=dict)
    #: real-money payments with an accrual (bonus-type cancellation candidates)
    accruing_payments: list[str] = field(default_factory=list)
    #: completed sales: sale_id -> each line's discount, in line order
    discounts: dict[str, list[Decimal]] = field(default_factory=dict)
    #: completed sales with a part on account sent with an `occurred_at` past the payment
    #: delay: overdue while owed (a sale paid in full never is)
    overdue: set[str] = field(default_factory=set)
    #: sales whose discount an accepted revocation revoked: sale_id -> the amount revoked
    revoked: dict[str, Decimal] = field(default_factory=dict)
    #: what an accepted answer said against the model (`invariants.check` reports each one)
    problems: list[str] = field(default_factory=list)

    def discount_left(self, sale_id: str) -> Decimal:
        """What revoking the sale's discount adds to what is owed: each discounted line's
        discount for the pieces kept (not returned), rounded half-up to the cent, as credit."""
        total = Decimal(0)
        for (_line_no, sold, returned), discount in zip(
            self.sales.get(sale_id, []), self.discounts.get(sale_id, []), strict=False
        ):
            if discount > 0 and sold > returned:
                total += (discount * (sold - returned) / sold).quantize(MONEY, ROUND_HALF_UP)
        return total

    def apply(self, op: Operation) -> None:
        """Update the driver's view from a final accepted answer."""
        answer = op.answer or {}
        before = (self.debt, self.advance, self.bonus)
        snapshot = answer.get("customer")
        # every answer's balances are the owners' own: credit's debt and advance (for
        # bonus-type, read from credit itself), loyalty's bonus balance
        if isinstance(snapshot, dict):
            self.debt = Decimal(snapshot["debt"])
            self.advance = Decimal(snapshot["advance"])
            self.bonus = Decimal(snapshot["bonus_balance"])
        if op.kind == "sale":
            lines = op.body["lines"]
            self.sales[answer["sale_id"]] = [
                [i + 1, int(Decimal(line["quantity"])), 0] for i, line in enumerate(lines)
            ]
            self.discounts[answer["sale_id"]] = [Decimal(line["discount"]) for line in lines]
            owed = any(p.get("method") == "on_account" for p in op.body.get("payments", []))
            if owed and _past_due(op.body.get("occurred_at")):
                self.overdue.add(answer["sale_id"])
            for payment in answer.get("payments", []):
                if Decimal(payment.get("bonus_accrued", "0")) > 0:
                    self.accruing_payments.append(payment["payment_id"])
        elif op.kind in ("take_money", "pay_debt", "advance"):
            if Decimal(answer.get("bonus_accrued", "0")) > 0:
                self.accruing_payments.append(answer["payment_id"])
        elif op.kind == "return":
            sale_id = op.path.split("/")[3]
            for returned in op.body["lines"]:
                for line in self.sales.get(sale_id, []):
                    if line[0] == returned["line_no"]:
                        line[2] += int(Decimal(returned["quantity"]))
        elif op.kind == "bonus_cancel":
            payment_id = op.path.split("/")[3]
            if payment_id in self.accruing_payments:
                self.accruing_payments.remove(payment_id)
        elif op.kind == "revoke_discount":
            self._revoked(op, before)

    def _revoked(self, op: Operation, before: tuple[Decimal, Decimal, Decimal]) -> None:
        """An accepted revocation: what its answer must say, from the model before it. The
        discount of an overdue sale is revoked once, whole (for the pieces kept), and only
        what is owed moves: debt minus advance grows by it (an advance covers it at once),
        the bonus balance is loyalty's, unchanged."""
        answer = op.answer or {}
        sale_id = op.path.split("/")[3]
        revoked = Decimal(answer.get("discount_revoked", "0"))
        debt, advance, bonus = before
        what = f"revocation of sale {sale_id} (key {op.key})"
        if answer.get("sale_id") != sale_id:
            self.problems.append(f"{what}: answered for sale {answer.get('sale_id')}")
        if sale_id in self.revoked:
            self.problems.append(f"{what}: accepted again (revoked {self.revoked[sale_id]} before)")
        if sale_id not in self.overdue:
            self.problems.append(f"{what}: accepted for a sale that is not past its due date")
        if revoked != self.discount_left(sale_id):
            self.problems.append(
                f"{what}: discount_revoked {revoked} != model {self.discount_left(sale_id)}"
            )
        if (self.debt - self.advance) - (debt - advance) != revoked:
            self.problems.append(
                f"{what}: debt - advance went from {debt - advance} to "
                f"{self.debt - self.advance}, not by {revoked}"
            )
        if self.bonus != bonus:
            self.problems.append(f"{what}: bonus_balance {self.bonus} != model {bonus}")
        self.revoked[sale_id] = revoked


@dataclass
class DriverStats:
    sent: int = 0
    attempts: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    settled: int = 0  # answered only by the retries after the run (see Driver.settle)
    conflicts: int = 0
    answers_202: int = 0  # "accepted, outcome not known yet": the POS asks again
    answers_5xx: int = 0  # 500/502/503/504 answers (the POS sends the request again)
    #: operations sent beyond the planned ones while the traffic was held for the first fault
    #: (`Driver.hold_for_fault`); also counted in `sent`: they are operations like the others
    held: int = 0
    unexpected: list[str] = field(default_factory=list)
    #: discount revocations by final outcome: `revoked` (200) or the refusal's code
    revocations: Counter[str] = field(default_factory=Counter)
    #: of them, those sent more than once before their final answer (met a fault on the way)
    revocations_retried: int = 0
    #: the planned ones (`revocation_plan`) among them, by final outcome
    revocations_planned: Counter[str] = field(default_factory=Counter)


ITEMS = [
    ("Dress", "4820000000017"),
    ("Shoes", "4820000000024"),
    ("Romper", "4820000000031"),
    ("Socks", "4820000000048"),
    ("Jacket", "4820000000055"),
]


class Driver:
    """Sends `ops_per_customer` seeded operations for each customer, one customer's at a time,
    all customers concurrently, retrying each request until it has a final answer or the
    `deadline` (monotonic) passes.

    A driver held for a fault (`hold_for_fault`) does not end its traffic before the scenario's
    first fault is in (`fault_injected`): a customer whose planned operations are done goes on
    with more of the same mix until then, and for `AFTER_FAULT_SECONDS` after it, until it has
    sent one of its own after the fault too; the deadline and `stop` end it all the same."""

    def __init__(
        self,
        gateway_url: str,
        customers: list[CustomerModel],
        *,
        seed: int,
        ops_per_customer: int,
        deadline: float,
        request_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        hostile: float = 0.0,
    ) -> None:
        self.gateway_url = gateway_url
        self.transport = transport  # tests only: None is a real HTTP connection
        self.customers = customers
        self.seed = seed
        self.ops_per_customer = ops_per_customer
        self.deadline = deadline
        self.request_timeout = request_timeout
        self.stats = DriverStats()
        self.done = asyncio.Event()
        self.started_at = 0.0
        self._stopping = False
        #: set by the scenario's first fault, at `fault_at` (monotonic); see `hold_for_fault`
        self.fault_in = asyncio.Event()
        self.fault_at = 0.0
        self.after_fault = AFTER_FAULT_SECONDS
        self._holding = False
        #: share of each customer's operations replaced by hostile input, and overflow
        #: campaigns (tools/chaos/hostile.py); 0: ordinary traffic only
        self.hostile = hostile
        self.world = hostile_input.World()
        for c in customers:
            self.world.customers.setdefault(c.chain.chain_id, []).append(c)

    def stop(self) -> None:
        """Start no further operation: each customer finishes the one in hand (a scenario whose
        faults decide how long the load lasts)."""
        self._stopping = True

    def hold_for_fault(self, after: float = AFTER_FAULT_SECONDS) -> None:
        """Keep the traffic going until the first fault is in and `after` seconds past it (each
        customer also until one operation of its own was sent after it): a fast stack can answer
        every planned operation before a scenario's first pause ends, and a fault that meets no
        traffic tests nothing. Bounded by the deadline; `release` ends the hold of a scenario
        that ends without a fault."""
        self._holding = True
        self.after_fault = after

    def fault_injected(self) -> None:
        """The scenario's first fault is in (later calls change nothing)."""
        if not self.fault_in.is_set():
            self.fault_at = time.monotonic()
            self.fault_in.set()

    def release(self) -> None:
        """No fault is coming (the scenario ended without one): stop holding the traffic. The
        while after a fault already in is kept."""
        if not self.fault_in.is_set():
            self._holding = False

    def _held(self, customer: CustomerModel) -> bool:
        """Whether a customer whose planned operations are done goes on."""
        if not self._holding:
            return False
        if not self.fault_in.is_set() or time.monotonic() < self.fault_at + self.after_fault:
            return True
        return not customer.ops or customer.ops[-1].sent_at < self.fault_at

    def _revocation_step_due(self, c: CustomerModel, n: int, sale_at: int, revoke_by: int) -> bool:
        """Whether the customer's operation number `n` is a step of its planned revocation
        (`revocation_plan`): the sale at `sale_at`; the request after it, at `revoke_by` or at
        the customer's first operation after the scenario's first fault if that comes sooner
        (so that some are asked while the stack recovers from it: the customer's operation in
        flight when it struck waits for the recovery, a revocation among them only by chance,
        as often as revocations are in the mix)."""
        if n <= sale_at:
            return n == sale_at
        if n >= revoke_by:
            return True
        return self.fault_in.is_set() and bool(c.ops) and c.ops[-1].sent_at < self.fault_at

    async def run(self) -> DriverStats:
        self.started_at = time.monotonic()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(
            base_url=self.gateway_url,
            limits=limits,
            timeout=self.request_timeout,
            transport=self.transport,
        ) as http:
            await asyncio.gather(
                *(
                    self._customer(http, index, customer)
                    for index, customer in enumerate(self.customers)
                )
            )
        self.done.set()
        return self.stats

    async def _customer(self, http: httpx.AsyncClient, index: int, customer: CustomerModel) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        terminal = rng.choice(customer.chain.terminals)[1]
        # an overflow campaign (hostile runs): at-limit amounts onto one balance until refused,
        # then 0.01 more, starting at a random point of this customer's traffic
        campaign = hostile_input.campaign_for(rng, customer) if self.hostile else None
        # (early enough that the campaign and its follow-up fit in this customer's traffic)
        campaign_at = rng.randint(
            0, max(0, self.ops_per_customer - hostile_input.CAMPAIGN_STEPS - 1) // 2
        )
        campaign_steps = 0
        planned = revocation_plan(rng, customer, self.ops_per_customer)
        for n in itertools.count():
            if time.monotonic() > self.deadline or self._stopping:
                return
            if n >= self.ops_per_customer:
                if not self._held(customer):
                    return
                self.stats.held += 1
            if rng.random() < 0.1:  # customers shop in several stores
                terminal = rng.choice(customer.chain.terminals)[1]
            op = next_operation(rng, customer)
            if planned and self._revocation_step_due(customer, n, *planned):
                op = planned_revocation_step(rng, customer, op, sale_at=planned[0])
                planned = planned if n == planned[0] else None
            elif planned and n > planned[0]:
                op = keeps_sale_owed(rng, customer, op, sale_at=planned[0])
            if campaign and n >= campaign_at:
                last = customer.ops[-1] if customer.ops else None
                if (
                    campaign_steps
                    and last is not None
                    and (not last.accepted or campaign_steps >= hostile_input.CAMPAIGN_STEPS)
                ):
                    op = hostile_input.campaign_follow_up(customer, campaign)
                    campaign = None
                else:
                    op = hostile_input.campaign_step(customer, campaign)
                    campaign_steps += 1
            elif self.hostile and rng.random() < self.hostile:
                op = hostile_input.operation(rng, customer, self.world, op)
            customer.ops.append(op)
            await self.send(http, op, customer.chain.admin_key if op.admin else terminal)
            if op.accepted:
                customer.apply(op)
                if op.kind == "sale":
                    self.world.add_sale(customer.chain.chain_id, (op.answer or {})["sale_id"])

    async def settle(self, within: float) -> DriverStats:
        """What a POS does once the outage is over: it retries every request still without a
        final answer (same Idempotency-Key, same body, same terminal) until it gets one.

        The run's deadline can leave a customer's last request unanswered; without this its
        effect could be checked only as "at most once", and ids the server makes (payment and
        return ids) could not be traced back to it. Requests still unanswered after `within`
        seconds stay in `unanswered`."""
        self.deadline = time.monotonic() + within
        pending = [(c, op) for c in self.customers for op in c.ops if op.status is None]
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(
            base_url=self.gateway_url,
            limits=limits,
            timeout=self.request_timeout,
            transport=self.transport,
        ) as http:

            async def retry(customer: CustomerModel, op: Operation) -> None:
                await self.send(http, op, op.api_key, retry=True)
                if op.status is not None:
                    self.stats.unanswered -= 1
                    self.stats.settled += 1
                if op.accepted:
                    customer.apply(op)  # an unanswered request is its customer's last one

            await asyncio.gather(*(retry(c, op) for c, op in pending))
        return self.stats

    async def send(
        self, http: httpx.AsyncClient, op: Operation, key: str, *, retry: bool = False
    ) -> None:
        """Send until a final answer (201/200/4xx) or the deadline: same key, same body."""
        if not retry:
            self.stats.sent += 1
            op.sent_at = time.monotonic()
        op.api_key = key
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": op.key}
        pause = 0.1
        while True:
            op.attempts += 1
            self.stats.attempts += 1
            retry_after = 0.0
            try:
                response = await http.request(
                    op.method,
                    op.path,
                    json=op.body if op.method != "GET" else None,
                    headers=headers,
                )
            except (httpx.TransportError, httpx.TimeoutException):
                response = None
            if response is not None and response.status_code >= 500:
                op.answers_5xx += 1
                self.stats.answers_5xx += 1
                try:
                    code = response.json().get("code", "")
                except (ValueError, AttributeError):
                    code = ""
                op.last_5xx = f"{response.status_code} {code}".strip()
            if response is not None and response.status_code not in RETRY_STATUSES:
                op.answered_at = time.monotonic()
                op.status = response.status_code
                try:
                    op.answer = response.json()
                except ValueError:
                    op.answer = {"raw": response.text[:200]}
                break
            if response is not None and response.status_code == 202:
                self.stats.answers_202 += 1
            if response is not None and response.status_code == 429:
                retry_after = float(response.headers.get("Retry-After", "1"))
            if time.monotonic() > self.deadline:
                if not retry:
                    self.stats.unanswered += 1
                return
            await asyncio.sleep(max(pause, retry_after))
            pause = min(pause * 2, 2.0)
        code = (op.answer or {}).get("code")
        if op.kind == "revoke_discount" and not op.hostile:
            self._revocation_answered(op, code)
        elif op.expect and (
            op.status not in op.expect
            or (op.expect_codes and not op.accepted and code not in op.expect_codes)
        ):
            # hostile input answered otherwise than the contract says
            self.stats.unexpected.append(
                f"{op.hostile} {op.method} {op.path}: {op.status} "
                f"{op.answer} (expected {sorted(op.expect)})"
            )
        elif op.accepted:
            self.stats.accepted += 1
        elif op.expect:
            self.stats.refused += 1
        elif op.status == 409 and (op.answer or {}).get("code") == "idempotency_conflict":
            # the same key with the same body can never conflict: a retry bug
            self.stats.conflicts += 1
            self.stats.unexpected.append(f"{op.kind} {op.key}: 409 {op.answer}")
        elif op.status == 422:
            self.stats.refused += 1
        else:
            self.stats.unexpected.append(f"{op.kind} {op.path}: {op.status} {op.answer}")

    def _revocation_answered(self, op: Operation, code: object) -> None:
        """A revocation's final answer: 200 (revoked), or a refusal it may get
        (`REVOKE_REFUSALS`); any other is a violation."""
        if op.attempts > 1:
            self.stats.revocations_retried += 1
        if op.status == 200:
            self.stats.accepted += 1
            outcome = "revoked"
        elif (op.status, code) in REVOKE_REFUSALS:
            self.stats.refused += 1
            outcome = str(code)
        else:
            outcome = "unexpected"
            self.stats.unexpected.append(
                f"{op.kind} {op.path} (key {op.key}): {op.status} {op.answer}"
            )
        self.stats.revocations[outcome] += 1
        if op.planned:
            self.stats.revocations_planned[outcome] += 1


@dataclass
class Stall:
    """How long the tills waited: `gap` is the longest time during which NO request got a final
    answer (201/200/4xx) while requests were outstanding (every till waited: a stall of the
    whole system), from `gap_start` (monotonic); `longest_wait` is the longest one request
    waited from its first send to its final answer (202s and retries included)."""

    gap: float = 0.0
    gap_start: float = 0.0
    longest_wait: float = 0.0


def stall_of(ops: list[Operation], *, since: float, until: float) -> Stall:
    """The stall of the answers given in [since, until] (the load generator's run): requests
    answered only by the settling retries afterwards are not counted, nor is the ramp-up before
    the first answer."""
    answered = sorted(op.answered_at for op in ops if since <= op.answered_at <= until)
    result = Stall()
    for before, after in itertools.pairwise(answered):
        if after - before > result.gap:
            result.gap, result.gap_start = after - before, before
    waits = [
        op.answered_at - op.sent_at for op in ops if since <= op.answered_at <= until and op.sent_at
    ]
    result.longest_wait = max(waits, default=0.0)
    return result


def stall_after(ops: list[Operation], *, fault_at: float, until: float) -> float:
    """The longest time without any final answer that overlaps [fault_at, until]: the gap
    from the last answer before a fault to the first after it counts whole (the tills waited
    all of it), so each fault of a scenario gets the stall it caused."""
    answered = sorted(op.answered_at for op in ops if op.answered_at)
    longest = 0.0
    for before, after in itertools.pairwise(answered):
        if after >= fault_at and before <= until:
            longest = max(longest, after - before)
    return longest


# -- the operation mix ---------------------------------------------------------------------


def _amount(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _sale(rng: random.Random, c: CustomerModel) -> Operation:
    lines = []
    total = Decimal(0)
    for _ in range(rng.randint(1, 3)):
        name, barcode = rng.choice(ITEMS)
        quantity = rng.randint(1, 3)
        price = _amount(rng, 2, 60)
        discount = rng.choice([Decimal(0), Decimal(0), Decimal("1.00")])
        lines.append(_line(name, barcode, quantity, price, discount))
        total += price * quantity - discount
    payments: list[dict[str, str]] = []
    rest = total
    body: dict[str, Any] = {"sale_id": str(uuid.uuid4()), "lines": lines}
    mix = rng.random()
    if c.bonus > 0 and mix < 0.25:  # bonus first, the rest in real money (or too much bonus)
        spend = min(rest, c.bonus) if rng.random() < 0.9 else c.bonus + Decimal("5.00")
        spend = min(spend, rest)
        payments.append({"method": "bonus", "amount": money(spend)})
        rest -= spend
    if c.advance > 0 and rest > 0 and rng.random() < 0.3:
        use = min(rest, c.advance) if rng.random() < 0.9 else min(rest, c.advance + 3)
        payments.append({"method": "advance", "amount": money(use)})
        rest -= use
    if rest > 0 and rng.random() < 0.45:  # on account (refused for non-VIP / over limit)
        part = rest if rng.random() < 0.5 else (rest / 2).quantize(MONEY)
        payments.append({"method": "on_account", "amount": money(part)})
        rest -= part
    if rest > 0:
        if rng.random() < 0.5:
            change = Decimal(rng.choice([0, 0, 5, 10]))
            payments.append({"method": "cash", "amount": money(rest + change)})
            if change and rng.random() < 0.6:
                body["change_to_advance"] = money(change if rng.random() < 0.9 else change + 1)
        else:
            payments.append({"method": "card", "amount": money(rest)})
    if rng.random() < 0.03:  # a cashier's typo: payments do not add up
        payments.append({"method": "cash", "amount": "0.01"})
    body["payments"] = payments
    needs_card = any(p["method"] in ("bonus", "on_account") for p in payments)
    if needs_card or rng.random() < 0.7:
        body["card_number"] = c.card
    else:
        body["customer_id"] = c.customer_id
    if rng.random() < 0.06:  # sent late by an offline till: already past its due date
        body["occurred_at"] = (datetime.now(UTC) - timedelta(days=rng.randint(35, 60))).isoformat()
    return Operation("sale", "POST", "/v1/sales", body, str(uuid.uuid4()))


def _line(
    name: str, barcode: str, quantity: int, price: Decimal, discount: Decimal
) -> dict[str, str]:
    """A receipt line as the till sends it."""
    return {
        "sku": name.upper(),
        "barcode": barcode,
        "name": name,
        "quantity": str(quantity),
        "unit_price": money(price),
        "discount": money(discount),
    }


def overdue_discounted_sale(rng: random.Random, c: CustomerModel) -> Operation:
    """A revocation's set-up: a sale with a discount on every line, on account, sent late by an
    offline till (35 to 60 days back, past its due date): overdue while it owes anything, and
    under `offer` nothing revokes its discount but a request. A customer's advance would cover
    what is put on account at once (the sale then owes nothing): the advance is spent in the
    sale (an `advance` payment), the rest is on account and owed; an advance below
    `TOPPED_UP_BELOW` and not smaller than the goods gets one more line, dear enough that the
    sale's total exceeds it by 10 to 30."""
    lines = []
    total = Decimal(0)
    count = rng.randint(1, 2)
    for n in itertools.count():
        if n >= count and (total > c.advance or c.advance >= TOPPED_UP_BELOW or n > count):
            break
        name, barcode = rng.choice(ITEMS)
        quantity = rng.randint(1, 2)
        price = _amount(rng, 10, 30)
        discount = _amount(rng, 1, 5)
        if n == count:  # the line that takes the total past the advance
            quantity = 1
            price += c.advance - total + discount
        lines.append(_line(name, barcode, quantity, price, discount))
        total += price * quantity - discount
    payments = [{"method": "on_account", "amount": money(total)}]
    if 0 < c.advance < total:
        payments = [
            {"method": "advance", "amount": money(c.advance)},
            {"method": "on_account", "amount": money(total - c.advance)},
        ]
    body: dict[str, Any] = {
        "sale_id": str(uuid.uuid4()),
        "card_number": c.card,
        "lines": lines,
        "payments": payments,
        "occurred_at": (datetime.now(UTC) - timedelta(days=rng.randint(35, 60))).isoformat(),
    }
    return Operation("sale", "POST", "/v1/sales", body, str(uuid.uuid4()))


def revocation(c: CustomerModel, sale_id: str) -> Operation:
    """A back-office request to revoke the discount of one of the customer's sales (admin key;
    no body): 200, or 409 `already_revoked`, 422 `not_overdue` (`REVOKE_REFUSALS`)."""
    return Operation(
        "revoke_discount",
        "POST",
        f"/v1/sales/{sale_id}/revoke-discount",
        {},
        str(uuid.uuid4()),
        admin=True,
    )


def revocation_plan(rng: random.Random, c: CustomerModel, ops: int) -> tuple[int, int] | None:
    """For some VIP customers of an `offer` chain (`REVOKER_SHARE`): the index among their
    `ops` planned operations of a back-dated discounted sale on account
    (`overdue_discounted_sale`), and the latest index of the request to revoke its discount,
    two to six operations later (`Driver._revocation_step_due` asks it sooner, at the first
    operation after the scenario's first fault). The sale is still owed then: the customer's
    operations in between bring in no money (`keeps_sale_owed`). Anywhere in the customer's first
    `PLANNED_WITHIN` operations (the cluster scenarios plan a million, their load lasting as
    long as the faults). None: no planned revocation."""
    if c.chain.overdue_discount != "offer" or not c.vip:
        return None
    if rng.random() >= REVOKER_SHARE:
        return None
    sale_at = rng.randint(0, max(0, min(ops, PLANNED_WITHIN) - 7))
    return sale_at, sale_at + rng.randint(2, 6)


def planned_revocation_step(
    rng: random.Random, c: CustomerModel, op: Operation, *, sale_at: int
) -> Operation:
    """A planned revocation's step in place of the mix's operation `op`: the back-dated
    discounted sale on account (the customer's operation number `sale_at`), then the request
    to revoke its discount (`op` if that sale was not accepted)."""
    if len(c.ops) == sale_at:
        return overdue_discounted_sale(rng, c)
    sale = c.ops[sale_at] if len(c.ops) > sale_at else None
    if sale is None or not sale.accepted or sale.kind != "sale" or sale.hostile:
        return op
    asked = revocation(c, (sale.answer or {})["sale_id"])
    asked.planned = True
    return asked


#: an advance up to this is exceeded by a planned revocation's sale (`overdue_discounted_sale`)
TOPPED_UP_BELOW = Decimal(10_000)

#: how many times `keeps_sale_owed` draws again from the mix before it lets money in
REDRAWS = 20


def brings_money(op: Operation, sale_id: str) -> bool:
    """Whether the operation, accepted, would pay the customer's oldest debt (the back-dated
    sale `sale_id`, the oldest sale there is) or take back its goods: money in (take money,
    pay debt, an advance, change kept as advance, a return refunded to the advance), or a
    return of that sale."""
    if op.kind in ("take_money", "pay_debt", "advance"):
        return True
    if op.kind == "sale":
        return "change_to_advance" in op.body
    if op.kind == "return":
        return op.body.get("refund") == "advance" or op.path.split("/")[3] == sale_id
    return False


def keeps_sale_owed(
    rng: random.Random, c: CustomerModel, op: Operation, *, sale_at: int
) -> Operation:
    """Between a planned revocation's sale (the customer's operation number `sale_at`) and its
    request, an operation of the mix that would bring money in is drawn again (each payment
    goes to the oldest sale first: it would pay the back-dated sale before its revocation is
    asked, `not_overdue`). The count of operations is the same; the customer's payments come
    after the request."""
    sale = c.ops[sale_at] if len(c.ops) > sale_at else None
    if sale is None or not sale.accepted or sale.kind != "sale" or sale.hostile:
        return op
    sale_id = (sale.answer or {})["sale_id"]
    for _ in range(REDRAWS):
        if not brings_money(op, sale_id):
            return op
        op = next_operation(rng, c)
    return op


def _revocation_target(rng: random.Random, c: CustomerModel) -> str | None:
    """A sale of the customer with a discount left to revoke: mostly an overdue one not revoked
    yet (revoked, or `not_overdue` once paid off), sometimes one already revoked
    (`already_revoked`) or any (a recent one: `not_overdue`). None: no sale with a discount."""
    candidates = [s for s in sorted(c.sales) if c.discount_left(s) > 0]
    if not candidates:
        return None
    overdue = [s for s in candidates if s in c.overdue and s not in c.revoked]
    revoked = [s for s in candidates if s in c.revoked]
    roll = rng.random()
    if revoked and roll < 0.3:
        return rng.choice(revoked)
    if overdue and roll < 0.75:
        return rng.choice(overdue)
    return rng.choice(candidates)


def next_operation(rng: random.Random, c: CustomerModel) -> Operation:
    """The next operation of this customer, from what the driver knows of it."""
    if c.chain.overdue_discount == "offer" and rng.random() < REVOKE_SHARE:
        target = _revocation_target(rng, c)
        if target is not None:
            return revocation(c, target)
    key = str(uuid.uuid4())
    base = f"/v1/customers/{c.customer_id}"
    roll = rng.random()
    if roll < 0.45:
        return _sale(rng, c)
    if roll < 0.55:
        amount = _amount(rng, 1, 80) if c.debt <= 0 else min(c.debt, _amount(rng, 1, 80))
        return Operation(
            "take_money",
            "POST",
            f"{base}/payments",
            {
                "kind": "take_money",
                "amount": money(amount),
                "method": rng.choice(["cash", "card"]),
                "card_number": c.card,
            },
            key,
        )
    if roll < 0.62:  # also when there is no debt: 422 no_debt
        return Operation(
            "pay_debt",
            "POST",
            f"{base}/payments",
            {"kind": "pay_debt", "method": rng.choice(["cash", "card"]), "card_number": c.card},
            key,
        )
    if roll < 0.72:
        return Operation(
            "advance",
            "POST",
            f"{base}/advances",
            {
                "amount": money(_amount(rng, 5, 100)),
                "method": rng.choice(["cash", "card"]),
                "card_number": c.card,
            },
            key,
        )
    if roll < 0.78:  # up to the advance, sometimes more: 422 insufficient_advance
        amount = c.advance / 2 if c.advance > 1 and rng.random() < 0.8 else c.advance + 5
        amount = max(amount.quantize(MONEY), Decimal("0.01"))
        return Operation(
            "refund",
            "POST",
            f"{base}/refunds",
            {
                "amount": money(amount),
                "method": rng.choice(["cash", "card"]),
                "card_number": c.card,
            },
            key,
        )
    if roll < 0.90 and c.sales:
        sale_id = rng.choice(sorted(c.sales))
        line_no, sold, returned = rng.choice(c.sales[sale_id])
        left = sold - returned
        quantity = rng.randint(1, left) if left > 0 and rng.random() < 0.85 else left + 1
        return Operation(
            "return",
            "POST",
            f"/v1/sales/{sale_id}/returns",
            {
                "lines": [{"line_no": line_no, "quantity": str(quantity)}],
                "refund": rng.choice(["cash", "card", "advance"]),
            },
            key,
        )
    if c.accruing_payments:
        payment_id = rng.choice(c.accruing_payments)
        return Operation(
            "bonus_cancel",
            "POST",
            f"/v1/payments/{payment_id}/bonus-type",
            {"bonus_type": "none"},
            key,
            admin=True,
        )
    return _sale(rng, c)


# -- set-up through the public API ---------------------------------------------------------


async def setup_chains(
    gateway_url: str, operator_token: str, *, label: str, customers: int, rng: random.Random
) -> list[CustomerModel]:
    """Three chains (balance, per_sale, per_item), each with two stores of two terminals and
    `customers` customers: VIP with cards, some with a credit limit, one in five not VIP.
    per_sale and per_item offer an overdue sale's discount for revocation (`offer`: only a
    request revokes it), balance keeps it."""
    models: list[CustomerModel] = []
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30.0) as http:
        for mode, discount in (("balance", "keep"), ("per_sale", "offer"), ("per_item", "offer")):
            op = {"Authorization": f"Bearer {operator_token}"}
            created = await _ok(
                http.post(
                    "/v1/chains",
                    headers=op,
                    json={
                        "name": f"Chaos {label} {mode}",
                        "currency": "EUR",
                        "timezone": "Europe/Bucharest",
                    },
                )
            )
            admin = {"Authorization": f"Bearer {created['admin_api_key']}"}
            await _ok(
                http.put(
                    "/v1/settings",
                    headers=admin,
                    json={"credit_mode": mode, "overdue_discount": discount},
                )
            )
            terminals = []
            for s in range(2):
                store = await _ok(
                    http.post(
                        "/v1/stores", headers=admin, json={"code": f"S{s}", "name": f"Store {s}"}
                    )
                )
                for t in range(2):
                    term = await _ok(
                        http.post(
                            f"/v1/stores/{store['store_id']}/terminals",
                            headers=admin,
                            json={"name": f"Till {t}"},
                        )
                    )
                    terminals.append((store["store_id"], term["api_key"]))
            chain = ChainKeys(
                created["chain_id"], mode, created["admin_api_key"], terminals, discount
            )
            for n in range(customers):
                vip = n % 5 != 4
                card = f"VIP-{label}-{mode[:3]}-{n}-{rng.randint(0, 10**6)}"
                body: dict[str, Any] = {
                    "name": f"Customer {n}",
                    "phone": f"+4070000{n:04d}",
                    "vip": vip,
                    "card_number": card,
                    "bonus_accrual": n % 7 != 6,
                }
                if n % 3 == 0:
                    body["credit_limit"] = "150.00"
                made = await _ok(http.post("/v1/customers", headers=admin, json=body))
                limit = Decimal(body["credit_limit"]) if "credit_limit" in body else None
                models.append(CustomerModel(chain, made["customer_id"], card, vip, limit))
    return models


async def _ok(request: Any) -> dict[str, Any]:
    response: httpx.Response = await request
    if response.status_code not in (200, 201):
        raise RuntimeError(f"set-up failed: {response.status_code} {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data
