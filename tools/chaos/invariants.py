"""The invariants checked after a chaos scenario has drained, through the public API only.

Why these prove "exactly once" and "nothing from a refusal":
- every operation of a customer was sent only after the previous one had its final answer,
  so the customer snapshot of the LAST accepted answer is the state the ledgers must end in;
- the customer statement (reporting's read model of credit's and loyalty's ledgers) lists
  every ledger movement with the id of the operation that made it. Each accepted operation's
  id must appear exactly once with its kind (a duplicate application would list it twice);
  every id in the statement must belong to an accepted operation (a refused request, or one
  applied although its answer was lost and never resolved, would bring an id the model does
  not know);
- requests that never got a final answer (the driver gave up at its deadline) may have been
  applied at most once: their ids are allowed in the statement at most once, and the
  balance comparison is skipped for that customer (the model cannot know the outcome). The
  driver retries until the deadline, so a healthy run has none; their number is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from tools.chaos.driver import CustomerModel, Operation

ZERO = Decimal(0)

#: statement entry kind of each accepted operation, and the answer field naming its id
ENTRY_OF = {
    "sale": ("sale", "sale_id"),
    "take_money": ("payment", "payment_id"),
    "pay_debt": ("payment", "payment_id"),
    "advance": ("advance", "payment_id"),
    "refund": ("refund", "refund_id"),
    "return": ("return", "return_id"),
}


def _ids_of(op: Operation) -> set[str]:
    """Every id an operation's answer (or request) names: sale, payment, refund, return ids."""
    found: set[str] = set()
    for source in (op.answer or {}, op.body):
        for name in ("sale_id", "payment_id", "refund_id", "return_id"):
            value = source.get(name)
            if isinstance(value, str):
                found.add(value)
        for payment in (source.get("payments") or []) if isinstance(source, dict) else []:
            if isinstance(payment, dict) and isinstance(payment.get("payment_id"), str):
                found.add(payment["payment_id"])
    return found


async def _get(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> Any:
    response = await http.get(path, headers={"Authorization": f"Bearer {key}"}, params=params)
    response.raise_for_status()
    return response.json()


async def _all_items(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        query = dict(params, limit=500)
        if cursor:
            query["cursor"] = cursor
        page = await _get(http, path, key, **query)
        items.extend(page["items"])
        cursor = page.get("next")
        if not cursor:
            return items


async def check(gateway_url: str, customers: list[CustomerModel]) -> list[str]:
    """Every violation found (empty: all invariants hold)."""
    violations: list[str] = []
    today = datetime.now(UTC).date()
    period = {"from": str(today - timedelta(days=120)), "to": str(today + timedelta(days=1))}
    by_chain: dict[str, list[CustomerModel]] = {}
    for c in customers:
        by_chain.setdefault(c.chain.chain_id, []).append(c)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30.0) as http:
        finals: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
        for c in customers:
            key = c.chain.admin_key
            shown = await _get(http, f"/v1/customers/{c.customer_id}", key)
            statement = await _get(http, f"/v1/customers/{c.customer_id}/statement", key, **period)
            balances = (
                Decimal(shown["debt"]),
                Decimal(shown["advance"]),
                Decimal(shown["bonus_balance"]),
            )
            finals[c.customer_id] = balances
            violations += _customer(c, balances, statement)
        for chain_customers in by_chain.values():
            violations += await _reports(http, chain_customers, finals, period)
    return violations


async def check_until_held(
    gateway_url: str, customers: list[CustomerModel], *, within: float, pause: float = 1.0
) -> tuple[list[str], float]:
    """Check again and again until every invariant holds or `within` seconds have passed
    (read models catch up asynchronously after a drain; a service may still be restarting).
    Returns the last violations found (empty: all hold) and the seconds it took. Used by the
    chaos runner after each scenario and by the pipeline benchmark after each step."""
    started = time.monotonic()
    while True:
        try:
            violations = await check(gateway_url, customers)
        except Exception as exc:  # a service still restarting: not drained yet
            violations = [f"check failed: {exc!r}"]
        if not violations or time.monotonic() - started > within:
            return violations, time.monotonic() - started
        await asyncio.sleep(pause)


def _customer(
    c: CustomerModel, balances: tuple[Decimal, Decimal, Decimal], statement: dict[str, Any]
) -> list[str]:
    out: list[str] = []
    who = f"customer {c.customer_id} ({c.chain.mode})"
    unanswered = [op for op in c.ops if op.status is None]
    accepted = [op for op in c.ops if op.accepted]
    debt, advance, _bonus = balances
    if debt > 0 and advance > 0:
        out.append(f"{who}: debt {debt} and advance {advance} at once")
    for op in accepted:
        snap = (op.answer or {}).get("customer") or {}
        if snap and Decimal(snap["debt"]) > 0 and Decimal(snap["advance"]) > 0:
            out.append(f"{who}: answer of {op.kind} shows debt and advance at once")
    # the model: the last accepted answer's snapshot (no unanswered request after it)
    last = next(
        (op for op in reversed(c.ops) if op.accepted and (op.answer or {}).get("customer")), None
    )
    if not unanswered:
        # the driver's model folds the accepted answers in order (CustomerModel.apply)
        expected = (c.debt, c.advance, c.bonus)
        if balances != expected:
            out.append(
                f"{who}: balances {balances} != model {expected} (last: "
                f"{last.kind if last else None})"
            )
    closing = statement["closing"]
    shown_closing = (
        Decimal(closing["debt"]),
        Decimal(closing["advance"]),
        Decimal(closing["bonus_balance"]),
    )
    if shown_closing != balances:
        out.append(f"{who}: statement closing {shown_closing} != balances {balances}")
    entries = statement["entries"]
    sums = [
        sum((Decimal(e[f]) for e in entries), ZERO)
        for f in ("debt_change", "advance_change", "bonus_change")
    ]
    opening = statement["opening"]
    start = (
        Decimal(opening["debt"]),
        Decimal(opening["advance"]),
        Decimal(opening["bonus_balance"]),
    )
    if tuple(s + o for s, o in zip(sums, start, strict=True)) != shown_closing:
        out.append(f"{who}: statement entries do not add up to its closing")
    # exactly once: each accepted operation's movement is listed once
    seen = Counter(
        (e["kind"], e["sale_id"] if e["kind"] == "sale" else e["payment_id"]) for e in entries
    )
    for op in accepted:
        if op.kind not in ENTRY_OF:
            continue
        kind, field_name = ENTRY_OF[op.kind]
        ident = (op.answer or {}).get(field_name)
        if seen[(kind, ident)] != 1:
            out.append(
                f"{who}: accepted {op.kind} {ident} is in the statement {seen[(kind, ident)]} times"
            )
    for op in accepted:
        if op.kind == "bonus_cancel" and Decimal((op.answer or {}).get("bonus_cancelled", "0")) > 0:
            ident = op.path.split("/")[3]
            if seen[("bonus_cancelled", ident)] != 1:
                out.append(
                    f"{who}: bonus cancellation of {ident} listed "
                    f"{seen[('bonus_cancelled', ident)]} times"
                )
    # nothing else: every id in the statement comes from an accepted operation (or, at most
    # once, from a request that never got an answer)
    known: set[str] = set()
    for op in accepted:
        known |= _ids_of(op)
    maybe: set[str] = set()
    for op in unanswered:
        maybe |= _ids_of(op)
    refused_ids: set[str] = set()
    for op in c.ops:
        if op.refused:
            refused_ids |= _ids_of(op)
    for e in entries:
        # bonus movements a sale or return causes may carry ids the ledger derives (accrual on
        # the advance that covered an on-account part): they belong to their accepted sale
        if e["kind"].startswith("bonus_") and e["sale_id"] in known:
            continue
        for ident in (e["sale_id"], e["payment_id"]):
            if ident is None or ident in known:
                continue
            if ident in refused_ids:
                out.append(f"{who}: refused operation {ident} left a {e['kind']} entry")
            elif ident not in maybe:
                out.append(f"{who}: statement entry {e['kind']} {ident} from no known operation")
    main_kinds = Counter(
        e["payment_id"] for e in entries if e["kind"] in ("payment", "advance", "refund", "return")
    )
    for ident in maybe:
        if main_kinds[ident] > 1:
            out.append(f"{who}: unanswered operation {ident} applied {main_kinds[ident]} times")
    out += [f"{who}: {problem}" for problem in c.problems]
    return out + _revocations(c, who, entries)


def _revocations(c: CustomerModel, who: str, entries: list[dict[str, Any]]) -> list[str]:
    """Each sale's discount revoked at most once, only by a request that was accepted: the
    statement lists a sale's `discount_revoked` movement as many times as the sale has
    accepted revocations (0 or 1; a request that never got an answer may have left one), and
    `already_revoked` refuses only a sale revoked before. (What an accepted one answers is
    checked against the model as it is folded in: `CustomerModel.problems`.)"""
    out: list[str] = []
    accepted: Counter[str] = Counter()
    maybe: set[str] = set()
    for op in c.ops:
        if op.kind != "revoke_discount" or op.hostile:
            continue
        sale_id = op.path.split("/")[3]
        code = (op.answer or {}).get("code")
        if (
            op.status == 409
            and code == "already_revoked"
            and not (accepted[sale_id] or sale_id in maybe)
        ):
            out.append(f"{who}: sale {sale_id} refused already_revoked, never revoked before")
        if op.accepted:
            accepted[sale_id] += 1
        elif op.status is None:
            maybe.add(sale_id)
    listed = Counter(e["sale_id"] for e in entries if e["kind"] == "discount_revoked")
    for sale_id in sorted(set(listed) | set(accepted)):
        if accepted[sale_id] > 1:
            out.append(f"{who}: discount of sale {sale_id} revoked {accepted[sale_id]} times")
        unanswered = sale_id in maybe and listed[sale_id] == 1 and not accepted[sale_id]
        if listed[sale_id] != min(accepted[sale_id], 1) and not unanswered:
            out.append(
                f"{who}: sale {sale_id}'s discount_revoked listed {listed[sale_id]} times, "
                f"{accepted[sale_id]} revocations accepted"
            )
    return out


async def _reports(
    http: httpx.AsyncClient,
    customers: list[CustomerModel],
    finals: dict[str, tuple[Decimal, Decimal, Decimal]],
    period: dict[str, str],
) -> list[str]:
    out: list[str] = []
    key = customers[0].chain.admin_key
    mode = customers[0].chain.mode
    ids = {c.customer_id for c in customers}
    pb = await _get(http, "/v1/reports/payment-balance", key, **period)
    for row in pb["rows"]:
        if row["customer_id"] in ids:
            debt, advance, _ = finals[row["customer_id"]]
            if Decimal(row["closing"]) != advance - debt:
                out.append(
                    f"{mode}: payment-balance closing {row['closing']} of "
                    f"{row['customer_id']} != advance - debt {advance - debt}"
                )
    total_closing = sum((f[1] - f[0] for i, f in finals.items() if i in ids), ZERO)
    if Decimal(pb["totals"]["closing"]) != total_closing:
        out.append(
            f"{mode}: payment-balance closing total {pb['totals']['closing']} != {total_closing}"
        )
    unpaid = await _get(http, "/v1/reports/unpaid-goods", key)
    owed: dict[str, Decimal] = {}
    for row in unpaid["rows"]:
        owed[row["customer_id"]] = owed.get(row["customer_id"], ZERO) + Decimal(row["amount_owed"])
    for customer_id in ids:
        if owed.get(customer_id, ZERO) != finals[customer_id][0]:
            out.append(
                f"{mode}: unpaid goods of {customer_id} sum to "
                f"{owed.get(customer_id, ZERO)} != its debt {finals[customer_id][0]}"
            )
    aging = await _get(http, "/v1/reports/aging", key)
    total_debt = sum((f[0] for i, f in finals.items() if i in ids), ZERO)
    if Decimal(aging["totals"]["total"]) != total_debt:
        out.append(f"{mode}: aging total {aging['totals']['total']} != debt {total_debt}")
    for row in aging["rows"]:
        if row["customer_id"] in ids and Decimal(row["total"]) != finals[row["customer_id"]][0]:
            out.append(f"{mode}: aging row {row['customer_id']} {row['total']} != its debt")
    stats = await _get(http, "/v1/reports/bonus-statistics", key, **period)
    total_bonus = sum((f[2] for i, f in finals.items() if i in ids), ZERO)
    if Decimal(stats["outstanding"]) != total_bonus:
        out.append(f"{mode}: bonus outstanding {stats['outstanding']} != balances {total_bonus}")
    for row in stats["by_customer"]:
        if row["customer_id"] in ids and Decimal(row["balance"]) != finals[row["customer_id"]][2]:
            out.append(f"{mode}: bonus statistics balance of {row['customer_id']} differs")
    tasks = await _all_items(http, "/v1/tasks", key, status="open")
    per_customer = Counter(t["customer_id"] for t in tasks)
    for customer_id, count in per_customer.items():
        if count > 1:
            out.append(f"{mode}: customer {customer_id} has {count} open reminder tasks")
    for c in customers:
        shown = await _get(http, f"/v1/customers/{c.customer_id}", key)
        if shown["overdue"] and per_customer[c.customer_id] != 1:
            out.append(
                f"{mode}: overdue customer {c.customer_id} has "
                f"{per_customer[c.customer_id]} open tasks"
            )
    return out
