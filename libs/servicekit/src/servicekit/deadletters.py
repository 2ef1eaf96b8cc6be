"""Operators' command for the dead-letter topic: list the letters, re-drive chosen ones.

    python -m servicekit.deadletters list [--consumer credit] [--since 2h | 2024-05-01T00:00Z]
    python -m servicekit.deadletters redrive --offset 3:17 [--offset 0:5 ...]

`list` reads `deadletter.v1` from the beginning without a consumer group (it never moves
anybody's offsets) and prints one line per letter: its id `partition:offset`, the consumer that
gave up, the original topic/partition/offset, the original message type and the reason.

`redrive` re-publishes each chosen letter's original bytes to its original topic with its
original key (so it lands on the same partition as before), with the idempotent `acks=all`
producer. Do it after fixing the cause. The consumer that dead-lettered the message has no
inbox row for it, so it applies it once; every other consumer of the topic already has it in
its inbox and skips it; re-driving the same letter again changes nothing. Re-driven messages
carry the header `deadletter-redrive` and are counted by the consumers in
`messages_redriven_total`; this command logs `dead_letters_redriven_total` for its run.

The original value is stored as UTF-8 text: an envelope (JSON) comes back byte for byte; bytes
that were not UTF-8 (undecodable garbage) cannot be, and re-driving them only dead-letters
them again. Kafka comes from `KAFKA_BOOTSTRAP_SERVERS` (or `--bootstrap-servers`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import decode, parse_payload
from contracts.topics import DEAD_LETTERS
from servicekit.consumer import REDRIVE_HEADER
from servicekit.kafkasecurity import KafkaClientSettings, client_options
from servicekit.logging import configure_logging

log = logging.getLogger("servicekit.deadletters")


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic, with its coordinates there."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def line(self) -> str:
        reason = " ".join(self.letter.reason.split())
        if len(reason) > 300:
            reason = reason[:297] + "..."
        return (
            f"{self.id}\t{self.letter.failed_at.isoformat(timespec='seconds')}"
            f"\tconsumer={self.letter.consumer}"
            f"\toriginal={self.letter.original_topic}[{self.letter.partition}]"
            f"@{self.letter.offset}"
            f"\ttype={self.letter.original_type or '-'}"
            f"\terror={self.letter.error_type}\treason={reason}"
        )


async def read_letters(
    bootstrap_servers: str, options: Mapping[str, Any] | None = None
) -> list[Letter]:
    """Every letter on the topic, oldest first per partition (no consumer group, no commit).

    `options`: `servicekit.kafkasecurity.client_options` (TLS, SASL) for every client."""
    options = dict(options or {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **options
    )
    await consumer.start()
    letters: list[Letter] = []
    try:
        partitions = await _partitions(bootstrap_servers, options)
        tps = [TopicPartition(DEAD_LETTERS, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    letter = _parse(rec.value)
                    if letter is None:
                        log.warning(
                            "unreadable record %d:%d on %s", tp.partition, rec.offset, DEAD_LETTERS
                        )
                    else:
                        letters.append(Letter(tp.partition, rec.offset, letter))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return letters


async def _partitions(bootstrap_servers: str, options: Mapping[str, Any]) -> list[int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="deadletters", **options
    )
    await admin.start()
    try:
        described = await admin.describe_topics([DEAD_LETTERS])
    finally:
        await admin.close()
    return [
        int(p["partition"])
        for topic in described
        if topic.get("topic") == DEAD_LETTERS and not topic.get("error_code")
        for p in topic.get("partitions", [])
    ]


def _parse(value: bytes | None) -> DeadLetter | None:
    try:
        payload = parse_payload(decode(value or b""))
    except Exception:
        return None
    return payload if isinstance(payload, DeadLetter) else None


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO date/time (UTC when it has no zone)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def select(
    letters: Sequence[Letter], *, consumer: str | None = None, since: datetime | None = None
) -> list[Letter]:
    return [
        x
        for x in letters
        if (consumer is None or x.letter.consumer == consumer)
        and (since is None or x.letter.failed_at >= since)
    ]


def resolve(letters: Sequence[Letter], wanted: Sequence[str]) -> list[Letter]:
    """The letters named `partition:offset` (or a bare offset, when only one letter has it)."""
    by_id = {x.id: x for x in letters}
    chosen: list[Letter] = []
    for ref in wanted:
        if ":" in ref:
            found = by_id.get(ref.strip())
            if found is None:
                raise SystemExit(f"no dead letter {ref} on {DEAD_LETTERS}")
        else:
            matches = [x for x in letters if str(x.offset) == ref.strip()]
            if len(matches) != 1:
                ids = ", ".join(x.id for x in matches) or "none"
                raise SystemExit(
                    f"offset {ref} is not one letter ({ids}): give it as partition:offset"
                )
            found = matches[0]
        if found not in chosen:
            chosen.append(found)
    return chosen


async def redrive(
    bootstrap_servers: str, letters: Sequence[Letter], options: Mapping[str, Any] | None = None
) -> int:
    """Publish each letter's original bytes to its original topic and key; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        **dict(options or {}),
    )
    await producer.start()
    sent = 0
    try:
        for x in letters:
            key = x.letter.key.encode() if x.letter.key is not None else None
            meta = await producer.send_and_wait(
                x.letter.original_topic,
                value=x.letter.original_value.encode("utf-8"),
                key=key,
                headers=[(REDRIVE_HEADER, x.id.encode())],
            )
            sent += 1
            log.info(
                "re-drove dead letter %s (%s, from %s) to %s[%d]@%d",
                x.id,
                x.letter.original_type or "unreadable",
                x.letter.consumer,
                meta.topic,
                meta.partition,
                meta.offset,
                extra={"fields": {"dead_letters_redriven_total": sent}},
            )
    finally:
        await producer.stop()
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.deadletters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print the dead letters, one per line")
    listing.add_argument("--consumer", help="only this consumer group's letters")
    listing.add_argument("--since", help="only letters since: 30m, 2h, 7d or an ISO time")
    again = commands.add_parser("redrive", help="re-publish letters to their original topic")
    again.add_argument(
        "--offset",
        action="append",
        required=True,
        metavar="PARTITION:OFFSET",
        help="the letter's id as `list` prints it (repeat for several)",
    )
    args = parser.parse_args(argv)
    # log lines (JSON) on stderr; the listing itself on stdout
    configure_logging("deadletters", os.environ.get("LOG_LEVEL", "INFO"))
    # TLS and SASL as the services connect (KAFKA_SECURITY_PROTOCOL, ...: servicekit.kafkasecurity)
    options = client_options(KafkaClientSettings())
    letters = asyncio.run(read_letters(args.bootstrap_servers, options))
    if args.command == "list":
        since = parse_since(args.since) if args.since else None
        shown = select(letters, consumer=args.consumer, since=since)
        for x in shown:
            print(x.line())
        print(f"{len(shown)} dead letter(s) of {len(letters)} on {DEAD_LETTERS}", file=sys.stderr)
        return 0
    offsets = [part for ref in args.offset for part in ref.replace(",", " ").split()]
    chosen = resolve(letters, offsets)
    sent = asyncio.run(redrive(args.bootstrap_servers, chosen, options))
    print(f"re-drove {sent} dead letter(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
