"""How a consumer joins its group: a member killed without leaving (kill -9) must not hold its
partitions for long, since its restarted process waits for them (the pipeline benchmark's
recovery phase measures the whole restart: docs/benchmarks.md)."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker

from servicekit.consumer import Consumer


class _Broker:
    """A real FastStream broker (never started: nothing connects) that also keeps what the
    consumer asked of its subscriber."""

    def __init__(self) -> None:
        self.topics: tuple[str, ...] = ()
        self.options: dict[str, Any] = {}
        self._broker = KafkaBroker("127.0.0.1:1")

    def subscriber(self, *topics: str, **options: Any) -> Any:
        self.topics, self.options = topics, options
        return self._broker.subscriber(*topics, **options)


def test_a_dead_member_is_out_of_the_group_after_six_seconds_not_aiokafkas_ten() -> None:
    broker = _Broker()
    consumer = Consumer(name="bench-group", topics=["a.v1", "b.v1"], handlers={})
    consumer.attach(broker, session_factory=None)  # type: ignore[arg-type]
    assert broker.topics == ("a.v1", "b.v1")
    assert broker.options["group_id"] == "bench-group"
    assert broker.options["session_timeout_ms"] == 6_000
    # the broker's minimum; heartbeats well inside it
    assert broker.options["heartbeat_interval_ms"] * 3 <= broker.options["session_timeout_ms"]


async def test_the_subscriber_hands_over_faststreams_message_as_it_is() -> None:
    """The records stay undecoded (the consumer decodes each once), and the decoder is a
    coroutine: FastStream runs a synchronous one in a worker thread, per batch."""
    import inspect
    from types import SimpleNamespace

    broker = _Broker()
    consumer = Consumer(name="decode-once", topics=["a.v1"], handlers={})
    consumer.attach(broker, session_factory=None)  # type: ignore[arg-type]
    decoder = broker.options["decoder"]
    assert inspect.iscoroutinefunction(decoder)
    # FastStream's default would json.loads every record's bytes; ours does nothing with them
    batch = SimpleNamespace(body=[b'{"message_id": "x"}', b"not json"], raw_message=())
    assert await decoder(batch) is batch


class _IdleClient:
    """An aiokafka consumer with nothing to fetch, or with `batches` to hand out."""

    def __init__(self, batches: dict[TopicPartition, list[Any]] | None = None) -> None:
        self.batches = batches or {}
        self.polls: list[tuple[int, int | None]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[Any, Any]:
        self.polls.append((timeout_ms, max_records))
        return self.batches


def _record(topic: str, partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, partition, offset, 0, 0, None, b"{}", None, 0, 2, ())


async def test_an_empty_poll_is_not_followed_by_a_sleep_that_a_new_record_would_wait_out() -> None:
    consumer = Consumer(
        name="no-idle-sleep", topics=["a.v1"], handlers={}, max_records=50, poll_timeout_ms=1000
    )
    consumer.attach(_Broker(), session_factory=None)  # type: ignore[arg-type]
    client = _IdleClient()
    started = time.perf_counter()
    assert await consumer._subscriber.get_msg(client) == ()
    # FastStream's batch subscriber sleeps the poll's timeout (here 1 s) after an empty poll
    assert time.perf_counter() - started < 0.2
    # the poll itself waits, and a record arriving ends the wait (aiokafka's getmany)
    assert client.polls == [(1000, 50)]


async def test_a_poll_hands_over_every_partitions_records_in_their_order() -> None:
    consumer = Consumer(name="poll-records", topics=["a.v1"], handlers={})
    consumer.attach(_Broker(), session_factory=None)  # type: ignore[arg-type]
    a = [_record("a.v1", 0, 7), _record("a.v1", 0, 8)]
    b = [_record("a.v1", 1, 3)]
    client = _IdleClient({TopicPartition("a.v1", 0): a, TopicPartition("a.v1", 1): b})
    assert await consumer._subscriber.get_msg(client) == (*a, *b)


def test_a_consumer_off_the_critical_path_lets_the_broker_gather_its_batches() -> None:
    broker = _Broker()
    consumer = Consumer(name="read-model", topics=["a.v1"], handlers={}, fetch_wait_ms=100)
    consumer.attach(broker, session_factory=None)  # type: ignore[arg-type]
    # the broker answers once it holds a batch's worth, or after 100 ms
    assert broker.options["fetch_max_wait_ms"] == 100
    assert broker.options["fetch_min_bytes"] >= 64 * 1024


def test_a_consumer_on_the_critical_path_gets_each_record_as_soon_as_it_is_there() -> None:
    broker = _Broker()
    Consumer(name="sale-path", topics=["a.v1"], handlers={}).attach(broker, None)  # type: ignore[arg-type]
    assert broker.options["fetch_min_bytes"] == 1  # an answer as soon as one byte is there
