"""Poison messages on the running system: dead-lettered with reason and coordinates, the partition
moves on, and a letter re-driven after the fix is applied once (and a second re-drive is a no-op).

The fix case is a real handler failure: a trigger in reporting's database refuses the sale row of
one chain (standing in for a broken table or a bad row an operator repairs), so reporting's
handler of `credit.SaleCompleted` fails, is retried, and after its attempts is dead-lettered
while the partition moves on. Dropping the trigger is the fix; `python -m
servicekit.deadletters redrive` is what the operator runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from contracts.credit.v1 import ApplyBonuses, SaleCompleted
from contracts.envelope import encode, make_envelope
from contracts.gateway.v1 import CancelPaymentBonus, ChainRegistered, RecordSale
from contracts.loyalty.v1 import BonusesApplied
from contracts.topics import (
    CREDIT_EVENTS,
    LOYALTY_COMMANDS,
    LOYALTY_EVENTS,
    MASTERDATA_EVENTS,
    POS_COMMANDS,
)
from devstack.stack import Stack
from servicekit.deadletters import Letter, read_letters

#: every input topic and a message type its consumers know (the schema violation uses it)
INPUT_TOPICS = {
    POS_COMMANDS: RecordSale.TYPE,
    LOYALTY_COMMANDS: ApplyBonuses.TYPE,
    CREDIT_EVENTS: SaleCompleted.TYPE,
    LOYALTY_EVENTS: BonusesApplied.TYPE,
    MASTERDATA_EVENTS: ChainRegistered.TYPE,
}
SHOES = {
    "sku": "SH-1",
    "barcode": "4820000000024",
    "name": "Shoes",
    "quantity": "1",
    "unit_price": "60.00",
    "discount": "0.00",
}


async def _publish(servers: str, items: list[tuple[str, bytes, bytes]]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        coordinates = []
        for topic, key, value in items:
            meta = await producer.send_and_wait(topic, value=value, key=key)
            coordinates.append((meta.partition, meta.offset))
        return coordinates
    finally:
        await producer.stop()


def consumer_groups_of(topic: str, handling: str | None = None) -> list[str]:
    """The consumer groups that read `topic` (and, with `handling`, have a handler for that
    message type), from the services' own consumer definitions."""
    from credit.entrypoints.app import make_consumer as credit_consumer
    from loyalty.entrypoints.app import build_consumer as loyalty_consumer
    from loyalty.service_layer.handlers import LoyaltyHandlers
    from notifier.service_layer.handlers import make_consumer as notifier_consumer
    from pos_gateway.entrypoints.app import consumers as gateway_consumers
    from reporting.service_layer.handlers import make_consumer as reporting_consumer

    every = [
        credit_consumer(),
        loyalty_consumer(LoyaltyHandlers()),
        notifier_consumer(),
        reporting_consumer(),
        *gateway_consumers(),
    ]
    return sorted(
        c.name
        for c in every
        if topic in c.topics and (handling is None or any(handling == m.TYPE for m in c.handlers))
    )


def letters(stack: Stack) -> list[Letter]:
    return asyncio.run(read_letters(stack.kafka_bootstrap_servers))


def schema_violation(type_: str, chain_id: str, key: str) -> bytes:
    """A well-formed envelope of a known type whose payload breaks the type's schema."""
    valid = make_envelope(
        CancelPaymentBonus(
            payment_id=uuid.uuid4(),
            chain_id=uuid.UUID(chain_id),
            customer_id=uuid.uuid4(),
            requested_at=datetime.now(UTC),
        ),
        chain_id=uuid.UUID(chain_id),
        key=key,
        correlation_id=uuid.uuid4(),
    )
    return encode(valid.model_copy(update={"type": type_, "payload": {"not_a_field": 1}}))


def test_poison_messages_on_every_input_topic_are_dead_lettered_and_the_partitions_move_on(
    stack: Stack, new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    # keyed like the customer's own messages: the same partitions as the sale below
    key = customer["customer_id"].encode()
    items = []
    for topic, type_ in INPUT_TOPICS.items():
        items.append((topic, key, b"\xff\xfe this is not JSON"))
        items.append((topic, key, schema_violation(type_, chain.chain_id, key.decode())))
    coordinates = asyncio.run(_publish(stack.kafka_bootstrap_servers, items))
    groups = {topic: consumer_groups_of(topic) for topic in INPUT_TOPICS}
    # a group without a handler for the type passes its messages over unvalidated
    handling = {topic: consumer_groups_of(topic, type_) for topic, type_ in INPUT_TOPICS.items()}
    assert all(groups.values()) and all(handling.values()), (groups, handling)
    expected = [
        groups[topic] if i % 2 == 0 else handling[topic] for i, (topic, _, _) in enumerate(items)
    ]

    def all_dead_lettered() -> dict[tuple[str, int, int], list[Letter]] | None:
        found: dict[tuple[str, int, int], list[Letter]] = {}
        for x in letters(stack):
            where = (x.letter.original_topic, x.letter.partition, x.letter.offset)
            found.setdefault(where, []).append(x)
        # every consumer group of the topic gives up on each poison message, each in its time
        wanted = {
            (topic, p, o): g
            for (topic, _, _), (p, o), g in zip(items, coordinates, expected, strict=True)
        }
        done = all(
            sorted({x.letter.consumer for x in found.get(w, [])}) == g for w, g in wanted.items()
        )
        return found if done else None

    found = eventually(all_dead_lettered, timeout=90, interval=1.0)
    for index, ((topic, _, value), (partition, offset)) in enumerate(
        zip(items, coordinates, strict=True)
    ):
        got = found[(topic, partition, offset)]
        for x in got:
            assert x.letter.key == customer["customer_id"]
            if index % 2 == 0:
                assert x.letter.reason.startswith("undecodable message"), x.letter.reason
                assert x.letter.original_type is None
            else:
                assert x.letter.reason.startswith("invalid payload"), x.letter.reason
                assert "not_a_field" in x.letter.reason
                assert x.letter.original_type == INPUT_TOPICS[topic]
                assert x.letter.original_value.encode() == value  # the original, byte for byte
        # every consumer group of the topic gave up on the undecodable one, every group that
        # handles the type on the schema violation: each once, and no other group
        consumers = sorted(x.letter.consumer for x in got)
        assert consumers == expected[index], consumers

    # the partitions are not stuck: the customer's sale goes through gateway, credit, loyalty
    # and back (every topic, on the poisoned partitions) and completes at once
    sale = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": customer["card_number"],
            "lines": [SHOES],
            "payments": [{"method": "cash", "amount": "60.00"}],
        },
    )
    assert sale.status_code == 201, sale.text

    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "servicekit.deadletters",
            "--bootstrap-servers",
            stack.kafka_bootstrap_servers,
            "list",
            "--consumer",
            "credit",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    partition, offset = coordinates[0]
    assert f"original={POS_COMMANDS}[{partition}]@{offset}\t" in listed.stdout
    assert all("consumer=credit" in line for line in listed.stdout.splitlines())


def metric(stack: Stack, service: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{stack.url(service)}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def redrive(stack: Stack, letter: Letter) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "servicekit.deadletters",
            "--bootstrap-servers",
            stack.kafka_bootstrap_servers,
            "redrive",
            "--offset",
            letter.id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_a_letter_re_driven_after_the_fix_is_applied_once_and_again_changes_nothing(
    stack: Stack, new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    database = stack.env["REPORTING_DATABASE_URL"]
    trigger = f"e2e_refuse_{uuid.uuid4().hex[:8]}"
    asyncio.run(
        _sql(
            database,
            f"""CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'rm_sales is refusing rows of chain %', NEW.chain_id; END $$""",
            f"""CREATE TRIGGER {trigger} BEFORE INSERT ON rm_sales FOR EACH ROW
            WHEN (NEW.chain_id = '{chain.chain_id}') EXECUTE FUNCTION {trigger}()""",
        )
    )
    try:
        sale = chain.terminal.post(
            "/v1/sales",
            headers=idem(),
            json={
                "card_number": customer["card_number"],
                "lines": [SHOES],
                "payments": [{"method": "on_account", "amount": "60.00"}],
            },
        )
        assert sale.status_code == 201, sale.text  # the till flow does not need reporting
        sale_id = sale.json()["sale_id"]

        def dead_letter() -> Letter | None:
            for x in letters(stack):
                if (
                    x.letter.consumer == "reporting"
                    and x.letter.original_type == SaleCompleted.TYPE
                    and sale_id in x.letter.original_value
                ):
                    return x
            return None

        letter = eventually(dead_letter, timeout=90, interval=1.0)
        assert "rm_sales is refusing rows" in letter.letter.reason
    finally:
        # the fix
        asyncio.run(
            _sql(
                database,
                f"DROP TRIGGER IF EXISTS {trigger} ON rm_sales",
                f"DROP FUNCTION IF EXISTS {trigger}()",
            )
        )

    def unpaid() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = chain.admin.get("/v1/reports/unpaid-goods").json()["rows"]
        return [r for r in rows if r["sale_id"] == sale_id]

    assert unpaid() == []  # the effect is missing until someone acts

    redriven = metric(
        stack, "reporting", "messages_redriven_total", consumer="reporting", topic=CREDIT_EVENTS
    )
    redrive(stack, letter)
    [row] = eventually(unpaid, timeout=30, interval=0.5)
    assert row["amount_owed"] == "60.00"

    duplicates = metric(
        stack, "reporting", "messages_duplicate_total", consumer="reporting", topic=CREDIT_EVENTS
    )
    redrive(stack, letter)
    eventually(
        lambda: (
            metric(
                stack,
                "reporting",
                "messages_duplicate_total",
                consumer="reporting",
                topic=CREDIT_EVENTS,
            )
            > duplicates
        ),
        timeout=30,
        interval=0.5,
    )
    assert unpaid() == [row]
    assert (
        metric(
            stack, "reporting", "messages_redriven_total", consumer="reporting", topic=CREDIT_EVENTS
        )
        == redriven + 2
    )
    # the re-driven copies were not dead-lettered again
    again = [
        x
        for x in letters(stack)
        if x.letter.consumer == "reporting" and sale_id in x.letter.original_value
    ]
    assert again == [letter]
