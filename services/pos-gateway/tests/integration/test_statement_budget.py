"""How many SQL statements a sale costs the gateway: the request, and the outcome consumed.

SQLAlchemy statement building and asyncpg round trips were most of the gateway's CPU (the
benchmark's profiles, docs/benchmarks.md), so the count is a budget: a change that adds a
statement to the sale path shows here first. `counted` leaves out BEGIN and COMMIT (asyncpg
sends them itself); `queries_sent` sees them too, where they are the point."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from servicekit.testing import queries_sent, sessions_begun

pytestmark = pytest.mark.integration

SALE = {
    "card_number": "CARD-1",
    "lines": [
        {"sku": "D1", "name": "Dress", "quantity": "1", "unit_price": "60.00"},
        {"sku": "S1", "name": "Shoes", "quantity": "2", "unit_price": "20.00"},
    ],
    "payments": [
        {"method": "cash", "amount": "50.00"},
        {"method": "on_account", "amount": "50.00"},
    ],
}


@contextmanager
def counted(harness: Any) -> Iterator[list[str]]:
    """The statements the gateway's engine sends meanwhile (the harness's own outbox reads
    excluded)."""
    engine = harness.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().startswith("SELECT topic, value FROM outbox"):
            seen.append(" ".join(statement.split())[:100])

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


async def a_terminal_answered_without_polls(harness: Any) -> Any:
    """A chain with its customer and the terminal that sells to it; no poll while the test plays
    credit: the request's statements are the ones counted, and a waiting request is answered by
    the outcome (or 202)."""
    _, terminal, _ = await harness.setup_with_customer()
    harness.gateway.settings = harness.gateway.settings.model_copy(
        update={"sale_wait_seconds": 5.0, "outcome_poll_interval_seconds": 5.0}
    )
    return terminal


async def test_a_card_sale_with_its_own_sale_id_costs_a_fixed_number_of_statements(
    harness: Any, credit: Any
) -> None:
    terminal = await a_terminal_answered_without_polls(harness)
    body = {**SALE, "sale_id": str(uuid.uuid4())}
    with counted(harness) as request_part:
        request, command = await harness.sale_waiting(body, harness.till(terminal))
        # the waiting request reads nothing before it is woken
        await harness.until_waiting(command)
    with counted(harness) as consumer_part:
        async with queries_sent(harness.engine) as consumer_sent:
            await harness.deliver("credit.events.v1", credit.sale_completed(command.payload))
    with counted(harness) as answer_part:
        response = await request
    assert response.status_code == 201, response.text
    assert response.json()["payments"][0]["amount"] == "50.00"
    # the terminal key; the Idempotency-Key's claim with the chain, card and customer (and the sale
    # id's lock) in one; the request row, lines, payments, command and key link in one
    assert len(request_part) == 3, request_part
    # the outcome stored with its NOTIFY (the consumer keeps no inbox: `Consumer.inbox`), in
    # one statement that commits by itself: no BEGIN, no COMMIT (`Consumer.autocommit_for`)
    assert len(consumer_part) == 1, consumer_part
    assert consumer_sent == ["WITH"], consumer_sent
    # the outcome is handed to the waiting request of this process: no read
    assert answer_part == []
    async with harness.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text("SELECT (SELECT count(*) FROM sale_lines), (SELECT count(*) FROM payments)")
            )
        ).one()
    assert tuple(rows) == (2, 2)


async def test_a_terminals_next_sale_checks_its_cached_key_in_the_claims_statement(
    harness: Any, credit: Any
) -> None:
    terminal = await a_terminal_answered_without_polls(harness)
    statements = []
    sessions = []
    for _ in range(2):
        body = {**SALE, "sale_id": str(uuid.uuid4())}
        with counted(harness) as request_part, sessions_begun() as begun:
            request, command = await harness.sale_waiting(body, harness.till(terminal))
            await harness.until_waiting(command)
            await harness.deliver("credit.events.v1", credit.sale_completed(command.payload))
            assert (await request).status_code == 201
        sessions.append(len(begun))
        statements.append([s.split(" ")[:3] for s in request_part[:3]])
        async with harness.engine.begin() as conn:  # the next sale's command is the only one
            await conn.execute(sa.text("DELETE FROM outbox"))
    # the first sale reads the terminal's key; the next one takes it from the process's cache
    # and the claim's statement checks it is still active
    assert statements[0][0] == ["SELECT", "key_hash,", "key_id,"], statements
    assert statements[1][:2] == statements[0][1:], statements
    assert statements[1][2] == ["WITH", "settled", "AS"], statements  # the outcome's
    # the request's transaction, the outcome's batch and the first sale's read of the key
    # (`Gateway.read_one`) are `servicekit.sql.Tx`s: no session begins
    assert sessions == [0, 0], sessions


async def test_a_sale_sent_again_is_answered_from_its_row_without_a_session(
    harness: Any, credit: Any
) -> None:
    """A POS that lost the answer sends the sale again under its Idempotency-Key: the claim
    finds the key, the key's row and then the operation's are read, each one statement
    through asyncpg; no SQLAlchemy session (a POS retrying under load made the gateway read
    both through sessions, the most expensive reads it had)."""
    terminal = await a_terminal_answered_without_polls(harness)
    headers = harness.till(terminal, idempotency_key=str(uuid.uuid4()))
    body = {**SALE, "sale_id": str(uuid.uuid4())}
    request, command = await harness.sale_waiting(body, headers)
    await harness.until_waiting(command)
    await harness.deliver("credit.events.v1", credit.sale_completed(command.payload))
    first = await request
    assert first.status_code == 201, first.text
    with counted(harness) as seen, sessions_begun() as begun:
        again = await harness.client.post("/v1/sales", json=body, headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert begun == [], seen
    # the claim (with the chain, card and customer), the key's earlier request, the operation
    assert [s.split(" ")[:2] for s in seen] == [
        ["WITH", "claimed"],
        ["SELECT", "scope,"],
        ["SELECT", "s.chain_id,"],
    ], seen


async def test_a_request_woken_by_another_instances_notify_reads_nothing_after_the_wake_up(
    harness: Any, credit: Any
) -> None:
    terminal = await a_terminal_answered_without_polls(harness)
    # the consumer below plays the other instance: its commit wakes nobody in this process,
    # only PostgreSQL's NOTIFY reaches this process's listener
    await harness.as_another_instance()
    body = {**SALE, "sale_id": str(uuid.uuid4())}
    request, command = await harness.sale_waiting(body, harness.till(terminal))
    await harness.until_waiting(command)
    # counted from before the delivery: the wake-up may come before `deliver` returns
    with counted(harness) as seen:
        await harness.deliver("credit.events.v1", credit.sale_completed(command.payload))
        response = await request
    assert response.status_code == 201, response.text
    assert response.json()["payments"][0]["amount"] == "50.00"
    # the consumer's one (the outcome stored with its NOTIFY; it keeps no inbox), and nothing
    # after it: the notification carried the stored row, so the woken request answers without
    # a read
    assert [s.split(" ")[:3] for s in seen] == [["WITH", "settled", "AS"]], seen
